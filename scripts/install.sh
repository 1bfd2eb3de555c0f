#!/usr/bin/env bash
# Install cis490 from this checkout on a Debian/Ubuntu host with systemd.
#
#   sudo scripts/install.sh              # build (if cargo is here) and install
#   PREFIX=/opt/cis490 sudo -E scripts/install.sh
#   DESTDIR=/tmp/stage scripts/install.sh   # stage only: no systemctl, no users
#
# Environment:
#   PREFIX       binaries in $PREFIX/bin, docs in $PREFIX/share/doc/cis490
#                (default /usr/local); the units' ExecStart= follows it.
#   DESTDIR      staging root prepended to every path; nothing is activated.
#   UNITDIR      default /etc/systemd/system (local admin units on Debian).
#   SYSCONFDIR   default /etc.
#   NO_BUILD=1   do not run cargo; install the binaries already built in
#                ${CARGO_TARGET_DIR:-target}/release.
#   ALLOW_MISSING_BINARIES=1  install what is built, warn about the rest
#                (for tests of a partial tree; never for a real host).
#
# Never overwrites /etc/cis490/lab-host.toml; never touches the data.
# Re-running it is safe and is how a new credential is picked up.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}
BINDIR=$PREFIX/bin
DOCDIR=$PREFIX/share/doc/cis490
CONFDIR=$SYSCONFDIR/cis490
CREDDIR=$CONFDIR/credentials
SYSUSERSDIR=$SYSCONFDIR/sysusers.d
TMPFILESDIR=$SYSCONFDIR/tmpfiles.d
# node_exporter's textfile directory (Debian), and the file cis490 writes.
TEXTFILE_DIR=/var/lib/prometheus/node-exporter
METRICS_FILE=/var/lib/cis490/metrics/cis490.prom
target=${CARGO_TARGET_DIR:-$here/target}
case $target in /*) ;; *) target=$here/$target ;; esac

BINARIES=(ship-episode ship-scanner quarantine-prune doctor)
UNITS=(cis490.slice cis490-ship-episode.path cis490-ship-episode.service cis490-ship-scanner.service
       cis490-quarantine-prune.timer cis490-quarantine-prune.service)
# The services that talk to the receiver, hence get the credentials.
NET_SERVICES=(cis490-ship-episode.service cis490-ship-scanner.service)

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

[ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root (or set DESTDIR to stage)"

if [ "${NO_BUILD:-0}" != 1 ] && command -v cargo >/dev/null; then
    # The root package only: the dev receiver is not installed on lab hosts.
    say "building release binaries in $target"
    (cd "$here" && cargo build --release --locked --bins)
fi
present=()
for b in "${BINARIES[@]}"; do
    if [ -x "$target/release/$b" ]; then
        present+=("$b")
    elif [ "${ALLOW_MISSING_BINARIES:-0}" = 1 ]; then
        say "WARNING: $target/release/$b is missing: not installed"
    else
        die "missing $target/release/$b: build with 'cargo build --release --bins' first"
    fi
done

install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$DOCDIR" "$DESTDIR$UNITDIR" \
    "$DESTDIR$SYSUSERSDIR" "$DESTDIR$TMPFILESDIR" "$DESTDIR$CONFDIR"
install -d -m 0700 "$DESTDIR$CREDDIR"

for b in "${present[@]}"; do
    # Copy then rename, so that a running scanner keeps its old inode.
    install -m 0755 "$target/release/$b" "$DESTDIR$BINDIR/.$b.new"
    mv -f "$DESTDIR$BINDIR/.$b.new" "$DESTDIR$BINDIR/$b"
done

# The unit files in units/ are the Debian package's (scripts/package.sh):
# ExecStart=/usr/bin/..., docs in /usr/share/doc/cis490-shipper. Rewrite
# those two to this PREFIX, so the units start the binaries installed here.
for u in "${UNITS[@]}"; do
    sed -e "s|^ExecStart=/usr/bin/|ExecStart=$BINDIR/|" \
        -e "s|/usr/share/doc/cis490-shipper/|$DOCDIR/|g" \
        "$here/units/$u" >"$DESTDIR$UNITDIR/.$u.new"
    chmod 0644 "$DESTDIR$UNITDIR/.$u.new"
    mv -f "$DESTDIR$UNITDIR/.$u.new" "$DESTDIR$UNITDIR/$u"
done
install -m 0644 "$here/units/cis490.sysusers.conf" "$DESTDIR$SYSUSERSDIR/cis490.conf"
install -m 0644 "$here/units/cis490.tmpfiles.conf" "$DESTDIR$TMPFILESDIR/cis490.conf"
install -m 0644 "$here/etc/lab-host.toml.example" "$DESTDIR$CONFDIR/lab-host.toml.example"
install -m 0644 "$here/docs/install.md" "$DESTDIR$DOCDIR/install.md"

# Credentials: LoadCredential= fails the start (243/CREDENTIALS) when its
# file is missing, on systemd 252 with no optional form, so the drop-in
# names only the secrets that exist now. Re-run after adding or removing one.
creds=()
for c in bearer-token client-key s3-secret-access-key; do
    [ -f "$DESTDIR$CREDDIR/$c" ] && creds+=("$c")
done
for s in "${NET_SERVICES[@]}"; do
    dropin=$DESTDIR$UNITDIR/$s.d/50-cis490-credentials.conf
    if [ ${#creds[@]} -gt 0 ]; then
        install -d -m 0755 "$(dirname "$dropin")"
        {
            echo "# Written by scripts/install.sh from the files in $CREDDIR."
            echo "[Service]"
            for c in "${creds[@]}"; do echo "LoadCredential=$c:$CREDDIR/$c"; done
        } >"$dropin"
        chmod 0644 "$dropin"
    elif [ -e "$dropin" ]; then
        rm -f "$dropin"
        rmdir --ignore-fail-on-non-empty "$(dirname "$dropin")"
    fi
done
[ ${#creds[@]} -gt 0 ] && say "credentials passed with LoadCredential=: ${creds[*]}"

if [ -n "$DESTDIR" ]; then
    # Staged: the package or image build creates the user and activates.
    [ -e "$DESTDIR$CONFDIR/lab-host.toml" ] ||
        install -m 0640 "$here/etc/lab-host.toml.example" "$DESTDIR$CONFDIR/lab-host.toml"
    say "staged into $DESTDIR (nothing activated)"
    exit 0
fi

systemd-sysusers "$SYSUSERSDIR/cis490.conf"
systemd-tmpfiles --create "$TMPFILESDIR/cis490.conf"
# Fleet metrics: node_exporter's textfile directory (Debian's package) is
# not cis490's to write. A link there names the file cis490 writes in its
# own directory; the shipper replaces that file, node_exporter follows the
# link. Made only where node_exporter is installed and nothing is there yet.
if [ -d "$TEXTFILE_DIR" ] && [ ! -e "$TEXTFILE_DIR/cis490.prom" ] && [ ! -L "$TEXTFILE_DIR/cis490.prom" ]; then
    ln -s "$METRICS_FILE" "$TEXTFILE_DIR/cis490.prom"
    say "linked $TEXTFILE_DIR/cis490.prom -> $METRICS_FILE (fleet metrics for node_exporter)"
fi
if [ ! -e "$CONFDIR/lab-host.toml" ]; then
    install -m 0640 -o root -g cis490 "$here/etc/lab-host.toml.example" "$CONFDIR/lab-host.toml"
    say "wrote $CONFDIR/lab-host.toml from the example"
    fresh_config=1
else
    say "kept the existing $CONFDIR/lab-host.toml"
    fresh_config=0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    # Pick up new binaries and units in whatever is already running.
    for u in cis490-ship-scanner.service cis490-ship-episode.path cis490-quarantine-prune.timer; do
        if systemctl -q is-active "$u"; then systemctl restart "$u"; fi
    done
fi

say "installed: binaries in $BINDIR, units in $UNITDIR, config in $CONFDIR"
echo
echo "Left to do:"
n=1
if [ "$fresh_config" = 1 ] || grep -q '^host_id = "CHANGE-ME"' "$CONFDIR/lab-host.toml"; then
    echo "  $n. set host_id and receiver.url:   \$EDITOR $CONFDIR/lab-host.toml"
    n=$((n + 1))
fi
echo "  $n. let the recorder write episodes/: usermod -aG cis490 RECORDER_USER"
n=$((n + 1))
echo "  $n. start shipping:"
echo "     systemctl enable --now cis490-ship-episode.path cis490-ship-scanner.service cis490-quarantine-prune.timer"
echo "Then check with: $BINDIR/doctor"
