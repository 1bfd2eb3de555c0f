# Sourced by scripts/e2e-systemd.sh: the Debian package's life cycle in the
# same booted container, after scripts/uninstall.sh has removed the
# install.sh installation (data, user and config stay from that run).
#
# install without a config → nothing started, one line; config → ship an
# episode through the path unit; man pages and completions; upgrade to a
# rebuilt package (restarts the scanner, keeps the config); remove (units
# stopped, disabled); purge (package files gone, the episodes stay, the
# line says where); install again with the config already there (all
# started at once).
#
# The .debs are built from the release binaries of do_build (cargo deb
# --no-build), never compiled again.

# shellcheck shell=bash disable=SC2016
PKG_UNITS="cis490-ship-episode.path cis490-ship-scanner.service cis490-quarantine-prune.timer"
PKG_UPGRADE_VERSION=0.1.0-1+e2e2

pkg_apt() { # apt-get ARGS... inside the container, quiet, offline
    c env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 \
        --no-install-recommends "$@" 2>&1
}
pkg_version() { c dpkg-query -W -f '${Version} ${db:Status-Abbrev}' cis490-shipper 2>/dev/null || true; }

do_package_build() {
    local deb
    mkdir -p "$ROOT/var/tmp/debs"
    # The release binaries of do_build, packaged twice: as built, and under
    # a later version for the upgrade. No compile; fast compression.
    # (cargo-deb replaces an older .deb of the package in its output
    # directory: copy each one out at once.)
    for v in "" "$PKG_UPGRADE_VERSION"; do
        deb=$(NO_BUILD=1 DEB_FAST=1 DEB_VERSION=$v "$here/scripts/package.sh" |
            sed -n 's/^package.sh: built //p')
        [ -f "$deb" ] || fail "package.sh built nothing"
        cp "$deb" "$ROOT/var/tmp/debs/"
    done
    ls "$ROOT/var/tmp/debs"
}

do_package_install() {
    local out deb lines u
    # What install.sh's run left behind and a fresh host would not have:
    # the config (kept by uninstall.sh, moved aside here), the credential,
    # the watchdog test's drop-in.
    c mv "$CONF" "$CONF.install-sh"
    c rm -f /etc/cis490/credentials/bearer-token
    c rm -rf /etc/systemd/system/cis490-ship-scanner.service.d
    c systemctl daemon-reload
    # The container is an overlay of this machine's root, which may be a
    # Docker image: its policy-rc.d (exit 101) forbids maintainer scripts
    # to start or stop anything. A lab host has none; neither has the
    # container from here on (the host's file is untouched).
    c rm -f /usr/sbin/policy-rc.d
    # man-db's trigger rebuilds its whole index on every install and
    # removal (seconds each); `man NAME` finds the pages without it.
    c rm -f /var/lib/man-db/auto-update
    deb=$(cd "$ROOT/var/tmp/debs" && ls cis490-shipper_*.deb | grep -v "+e2e")
    out=$(pkg_apt install "/var/tmp/debs/$deb") || { echo "$out"; fail "apt-get install failed"; }
    lines=$(grep -c '^cis490-shipper:' <<<"$out" || true)
    [ "$lines" = 1 ] || { echo "$out"; fail "postinst printed $lines lines, not one"; }
    grep '^cis490-shipper:' <<<"$out"
    grep -q "^cis490-shipper: .*write $CONF" <<<"$out" || fail "the line does not say what to edit"
    grep -Eqi 'creat(ed|ing) (group|user)|error' <<<"$out" && { echo "$out"; fail "postinst said more"; }
    c getent passwd cis490 | grep -q nologin || fail "no system user cis490"
    [ "$(c stat -c '%a %U:%G' "$EP")" = "2775 cis490:cis490" ] || fail "episodes/: $(c stat -c '%a %U:%G' "$EP")"
    [ "$(c stat -c '%a' /etc/cis490/credentials)" = 700 ] || fail "credentials dir not 0700"
    # node_exporter is installed (test.sh): its textfile directory links to
    # the file cis490 writes.
    [ "$(c readlink /var/lib/prometheus/node-exporter/cis490.prom)" = /var/lib/cis490/metrics/cis490.prom ] ||
        fail "no metrics link in node_exporter's textfile directory"
    for u in $PKG_UNITS; do
        # (/lib is /usr/lib on Debian 12, and first in systemd's search path.)
        [ "$(c realpath "$(unit_prop "$u" FragmentPath)")" = "/usr/lib/systemd/system/$u" ] ||
            fail "$u: FragmentPath $(unit_prop "$u" FragmentPath)"
        [ "$(c systemctl is-enabled "$u")" = enabled ] || fail "$u not enabled"
        [ "$(unit_prop "$u" ActiveState)" = inactive ] || fail "$u started without a config"
    done
    unit_prop cis490-ship-episode.service ExecStart | grep -q 'path=/usr/bin/ship-episode ' ||
        fail "ExecStart: $(unit_prop cis490-ship-episode.service ExecStart)"
    [ ! -e "$ROOT$CONF" ] || fail "the package wrote $CONF"
    echo "$(pkg_version): user, dirs, units enabled, none started"
}

do_package_ship() {
    local id=pkg-1 out
    write_config "http://127.0.0.1:$PORT"
    out=$(c ship-episode --check-config) || fail "--check-config: $out"
    [ "$out" = OK ] || fail "--check-config said: $out"
    # The scanner last: its first sweep would race the path unit for pkg-1.
    c systemctl start cis490-ship-episode.path cis490-quarantine-prune.timer
    make_episode "$id" >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/$id' ]" 5 || fail "$id not shipped"
    check_intact "$id"
    [ "$(shipped_by "$id")" = ship-episode ] || fail "$id shipped by '$(shipped_by "$id")'"
    c systemctl start cis490-ship-scanner.service
    for u in $PKG_UNITS; do
        [ "$(unit_prop "$u" ActiveState)" = active ] || fail "$u: $(unit_prop "$u" ActiveState)"
    done
    echo "config checked (OK), units started, $id shipped by /usr/bin/ship-episode via the path unit"
}

do_package_docs() {
    local out f
    out=$(c env MANPAGER=cat MANWIDTH=80 man ship-episode 2>&1) || fail "man ship-episode: $out"
    grep -q -- '--check-config' <<<"$out" || fail "man ship-episode has no --check-config: $out"
    out=$(c env MANPAGER=cat MANWIDTH=80 man 5 lab-host.toml 2>&1) || fail "man 5 lab-host.toml: $out"
    grep -q 'quarantine_keep_days' <<<"$out" || fail "man 5 lab-host.toml lacks the keys"
    for f in ship-episode ship-scanner quarantine-prune doctor; do
        out=$(c bash -c "source /usr/share/bash-completion/completions/$f && complete -p $f") ||
            fail "bash completion of $f does not load: $out"
        grep -q "complete .* $f\$" <<<"$out" || fail "bash: $out"
        c zsh -n "/usr/share/zsh/vendor-completions/_$f" || fail "zsh completion of $f does not parse"
        c fish --no-execute "/usr/share/fish/vendor_completions.d/$f.fish" ||
            fail "fish completion of $f does not parse"
    done
    # fish offers the long options from the completion file.
    out=$(c fish -c "complete --do-complete 'ship-episode --check'")
    grep -q -- '--check-config' <<<"$out" || fail "fish does not complete --check-config: $out"
    echo "man ship-episode and man 5 lab-host.toml render; bash, zsh and fish completions load and parse"
}

do_package_upgrade() {
    local u=cis490-ship-scanner.service pid0 t0 out sum0 deb
    pid0=$(unit_prop $u MainPID)
    t0=$(unit_prop $u ActiveEnterTimestampMonotonic)
    sum0=$(c sha256sum "$CONF")
    deb=$(cd "$ROOT/var/tmp/debs" && ls cis490-shipper_"${PKG_UPGRADE_VERSION}"_*.deb)
    out=$(pkg_apt install "/var/tmp/debs/$deb") ||
        { echo "$out"; fail "upgrade failed"; }
    grep -q '^cis490-shipper:' <<<"$out" && fail "the upgrade printed: $(grep '^cis490-shipper:' <<<"$out")"
    case $(pkg_version) in "$PKG_UPGRADE_VERSION ii ") ;; *) fail "installed: $(pkg_version)" ;; esac
    [ "$(unit_prop $u ActiveState)" = active ] || fail "scanner $(unit_prop $u ActiveState) after the upgrade"
    [ "$(unit_prop $u MainPID)" != "$pid0" ] || fail "scanner not restarted (MainPID $pid0)"
    [ "$(unit_prop $u ActiveEnterTimestampMonotonic)" -gt "$t0" ] || fail "ActiveEnterTimestamp unchanged"
    [ "$(c sha256sum "$CONF")" = "$sum0" ] || fail "the config changed"
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] || fail "path unit not active"
    make_episode pkg-2 >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/pkg-2' ]" 5 || fail "pkg-2 not shipped after the upgrade"
    echo "$(pkg_version): scanner MainPID $pid0 → $(unit_prop $u MainPID), config kept, pkg-2 shipped"
}

do_package_remove() {
    local out u
    out=$(pkg_apt remove cis490-shipper) || { echo "$out"; fail "remove failed"; }
    for u in $PKG_UNITS cis490-ship-episode.service; do
        case $(unit_prop "$u" ActiveState) in inactive | failed) ;; *) fail "$u still $(unit_prop "$u" ActiveState)" ;; esac
    done
    out=$(c find /etc/systemd/system -name 'cis490-*' -type l)
    [ -z "$out" ] || fail "still enabled: $out"
    [ ! -e "$ROOT/usr/bin/ship-episode" ] || fail "binary still there"
    [ -f "$ROOT$CONF" ] || fail "remove deleted the config"
    [ -d "$ROOT$DATA/shipped/pkg-1" ] || fail "remove deleted data"
    [ ! -L "$ROOT/var/lib/prometheus/node-exporter/cis490.prom" ] || fail "metrics link left after remove"
    echo "units stopped, no enablement symlink left, binaries and metrics link gone; config and data kept"
}

do_package_purge() {
    local out f
    out=$(pkg_apt purge cis490-shipper) || { echo "$out"; fail "purge failed"; }
    grep '^cis490-shipper:' <<<"$out"
    grep -q "^cis490-shipper: purged; kept the episodes in $DATA" <<<"$out" ||
        { echo "$out"; fail "purge did not say where the data is"; }
    [ -z "$(pkg_version)" ] || case $(pkg_version) in *" pn "*) ;; *) fail "still known to dpkg: $(pkg_version)" ;; esac
    for f in /usr/bin/ship-episode /usr/lib/systemd/system/cis490-ship-episode.path \
        /usr/lib/sysusers.d/cis490.conf /usr/lib/tmpfiles.d/cis490.conf /usr/share/doc/cis490-shipper \
        /usr/share/man/man1/ship-episode.1.gz /usr/share/bash-completion/completions/ship-episode; do
        [ ! -e "$ROOT$f" ] || fail "$f still there after purge"
    done
    [ -z "$(c find /var/lib/systemd/deb-systemd-helper-enabled -name 'cis490-*' 2>/dev/null)" ] ||
        fail "deb-systemd-helper state left"
    for f in shipped/pkg-1 shipped/pkg-2 shipped/ren-1; do
        [ -d "$ROOT$DATA/$f" ] || fail "purge deleted $DATA/$f"
    done
    check_intact pkg-1
    echo "package files gone; $(find "$ROOT$DATA/shipped" -mindepth 1 -maxdepth 1 -type d | wc -l) shipped episodes still in $DATA"
}

# A host whose config came first (configuration management): installing
# starts the units at once and prints nothing about editing.
do_package_install_configured() {
    local out deb u
    [ -f "$ROOT$CONF" ] || fail "no config left to install with"
    # A credential present at install time gets its LoadCredential= drop-in.
    c sh -c 'umask 077 && mkdir -p /etc/cis490/credentials && echo e2e-token > /etc/cis490/credentials/bearer-token'
    deb=$(cd "$ROOT/var/tmp/debs" && ls cis490-shipper_"${PKG_UPGRADE_VERSION}"_*.deb)
    out=$(pkg_apt install "/var/tmp/debs/$deb") || { echo "$out"; fail "apt-get install failed"; }
    grep -q '^cis490-shipper:' <<<"$out" && fail "printed: $(grep '^cis490-shipper:' <<<"$out")"
    for u in $PKG_UNITS; do
        [ "$(c systemctl is-enabled "$u")" = enabled ] || fail "$u not enabled"
        [ "$(unit_prop "$u" ActiveState)" = active ] || fail "$u: $(unit_prop "$u" ActiveState)"
    done
    c grep -qx 'LoadCredential=bearer-token:/etc/cis490/credentials/bearer-token' \
        /etc/systemd/system/cis490-ship-episode.service.d/50-cis490-credentials.conf ||
        fail "no credentials drop-in"
    make_episode pkg-3 >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/pkg-3' ]" 5 || fail "pkg-3 not shipped"
    check_intact pkg-3
    echo "config present: path unit, scanner and timer enabled and active at once, credential drop-in written; pkg-3 shipped"
}
