#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests, and the
# end-to-end test against a real systemd booted in a container.
# Installs what it needs (as root, or with sudo) on a Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v systemd-nspawn >/dev/null 2>&1 || need_pkgs+=(systemd-container)
command -v journalctl >/dev/null 2>&1 || need_pkgs+=(systemd)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
command -v nsenter >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v runuser >/dev/null 2>&1 || need_pkgs+=(util-linux)
# tests/refusals.rs puts a stock nginx in front of the dev receiver.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)
# The Debian package: lintian checks it; the e2e reads its man pages and
# loads its bash, zsh and fish completions.
command -v lintian >/dev/null 2>&1 || need_pkgs+=(lintian)
command -v man >/dev/null 2>&1 || need_pkgs+=(man-db)
command -v zsh >/dev/null 2>&1 || need_pkgs+=(zsh)
command -v fish >/dev/null 2>&1 || need_pkgs+=(fish)
# tests/metrics.rs checks the metrics file and the alert rules with promtool
# (Debian's prometheus package); the e2e serves the file with node_exporter.
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || need_pkgs+=(prometheus-node-exporter)
# tests/s3.rs runs moto_server (PyPI), installed below into a venv.
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing ${need_pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
source scripts/ensure-moto.sh
ensure_moto
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
# scripts/package.sh (and the e2e's package steps) build the .deb with it.
cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features failpoints -- -D warnings
echo "== cargo test"
# --workspace also builds the dev receiver the integration tests start.
cargo test --workspace --all-targets --features failpoints

# A real systemd booted in a container: needs root (mount, nspawn, nsenter).
echo "== end-to-end against a real systemd (scripts/e2e-systemd.sh)"
if [ "$(id -u)" -eq 0 ]; then
    scripts/e2e-systemd.sh
else
    sudo scripts/e2e-systemd.sh
fi

# The .deb the e2e installed, rebuilt from the same release binaries (no
# compile): lintian must report no error (kept warnings: docs/install.md).
echo "== lintian"
deb=$(NO_BUILD=1 scripts/package.sh | sed -n 's/^package.sh: built //p')
lintian --fail-on error --display-info "$deb"
