#!/usr/bin/env bash
# Remove what scripts/install.sh installed, except the data
# (/var/lib/cis490), the config and credentials (/etc/cis490) and the
# cis490 user (it still owns the data). Takes the same PREFIX, DESTDIR,
# UNITDIR and SYSCONFDIR as install.sh.
set -euo pipefail

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}
BINDIR=$PREFIX/bin
DOCDIR=$PREFIX/share/doc/cis490

BINARIES=(ship-episode ship-scanner quarantine-prune doctor)
UNITS=(cis490.slice cis490-ship-episode.path cis490-ship-episode.service cis490-ship-scanner.service
       cis490-quarantine-prune.timer cis490-quarantine-prune.service)

[ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    # Stop the triggers first, so that nothing starts a service mid-way.
    systemctl disable --now cis490-ship-episode.path cis490-quarantine-prune.timer \
        cis490-ship-scanner.service 2>/dev/null || true
    systemctl stop cis490-ship-episode.service cis490-quarantine-prune.service 2>/dev/null || true
fi
for u in "${UNITS[@]}"; do
    rm -f "$DESTDIR$UNITDIR/$u"
    rm -f "$DESTDIR$UNITDIR/$u.d/50-cis490-credentials.conf"
    [ -d "$DESTDIR$UNITDIR/$u.d" ] && rmdir --ignore-fail-on-non-empty "$DESTDIR$UNITDIR/$u.d"
done
for b in "${BINARIES[@]}"; do rm -f "$DESTDIR$BINDIR/$b"; done
rm -f "$DESTDIR$SYSCONFDIR/sysusers.d/cis490.conf" "$DESTDIR$SYSCONFDIR/tmpfiles.d/cis490.conf"
rm -f "$DESTDIR$SYSCONFDIR/cis490/lab-host.toml.example"
rm -rf "$DESTDIR$DOCDIR"
# The link install.sh made for node_exporter (only if it is still ours).
if [ -z "$DESTDIR" ] && [ "$(readlink /var/lib/prometheus/node-exporter/cis490.prom 2>/dev/null)" = /var/lib/cis490/metrics/cis490.prom ]; then
    rm -f /var/lib/prometheus/node-exporter/cis490.prom
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed 'cis490-*' 2>/dev/null || true
fi
echo "uninstall.sh: removed binaries, units, sysusers/tmpfiles snippets and docs."
echo "Kept: data in /var/lib/cis490, config and credentials in $SYSCONFDIR/cis490, user cis490."
echo "To remove those too: rm -rf /var/lib/cis490 $SYSCONFDIR/cis490 && userdel cis490"
