#!/usr/bin/env bash
# Build the Debian package: target/debian/cis490-shipper_<version>_<arch>.deb
#
#   scripts/package.sh                  # release build, man pages, completions, .deb
#   NO_BUILD=1 scripts/package.sh       # package the release binaries already built
#   DEB_VERSION=0.1.0-2 scripts/package.sh   # another Debian version (e.g. a test upgrade)
#   DEB_FAST=1 scripts/package.sh       # gzip -1 instead of xz: a bigger .deb in seconds (tests)
#
# Configured in Cargo.toml [package.metadata.deb]; maintainer scripts in
# debian/. Installs cargo-deb (cargo install --locked) when it is missing.
# Then: sudo apt install ./target/debian/cis490-shipper_<version>_<arch>.deb
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
target=${CARGO_TARGET_DIR:-$here/target}
case $target in /*) ;; *) target=$here/$target ;; esac
export CARGO_TARGET_DIR=$target

say() { echo "package.sh: $*"; }

if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install --locked cargo-deb
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
    # The four lab-host binaries and the generator of their man pages and
    # completions; both share the library build.
    cargo build --release --locked -p cis490-shipper --bins -p gen-assets
fi
# cargo-deb maps target/release/ to $CARGO_TARGET_DIR/release/.
rm -rf "$target/release/deb-assets"
"$target/release/gen-assets" "$target/release/deb-assets" >/dev/null
# Debian wants man pages as `gzip -9n` (cargo-deb compresses only the ones
# it does not find under target/).
gzip -9n "$target/release/deb-assets/man/"*.1

# --compress-system: xz/gzip themselves, several times faster than
# cargo-deb's built-in compressors on this code (measured: 28 s against
# 1m45 for xz on 2 busy cores).
args=(--no-build --locked -p cis490-shipper --compress-system --output "$target/debian/")
[ -z "${DEB_VERSION:-}" ] || args+=(--deb-version "$DEB_VERSION")
[ "${DEB_FAST:-0}" != 1 ] || args+=(--fast -Z gz)
deb=$(cargo deb "${args[@]}" 2>&1 | tee "$target/debian-build.log" | tail -n 1)
[ -f "$deb" ] || { cat "$target/debian-build.log" >&2; exit 1; }
say "built $deb"
