#!/usr/bin/env bash
# End-to-end test of the units against a real systemd booted in a container
# (recipe: systemd-facts.md). Installs with scripts/install.sh inside the
# container, ships to cis490-dev-receiver on the shared loopback, and prints
# one `step NAME ... ok (1.23s)` line per check, then `N passed, N failed`.
#
#   sudo scripts/e2e-systemd.sh        (root: mounts, nspawn, nsenter)
#
# Needs: systemd-nspawn (installed if missing), cargo. Takes about a minute.
# The container is always torn down, also on failure or Ctrl-C.

# Intended: `A && B || fail` (fail is the else); '...' evaluated by wait_for.
# shellcheck disable=SC2015,SC2016,SC1091
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
case $target in /*) ;; *) target=$here/$target ;; esac
export CARGO_TARGET_DIR=$target

NAME=cis490-e2e-$$
BASE=/dev/shm/$NAME
ROOT=$BASE/root
STORE=$BASE/store
HOST_ID=e2e-host
DATA=/var/lib/cis490/data
EP=$DATA/episodes
CONF=/etc/cis490/lab-host.toml
SCAN_INTERVAL=2
FAIR_SECONDS=${E2E_FAIR_SECONDS:-6}
PID1=
STEP_PID=
DEADLINE_PID=
NSPAWN_PID=
RECV_PID=
RECV_TOKEN_PID=
PORT=
passed=0
failed=0
pending=0
T_START=$(date +%s.%N)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "e2e: $*"; }

teardown() {
    local rc=$?
    set +e
    load_state
    restore_autogroup 2>/dev/null
    if [ -n "$DEADLINE_PID" ]; then
        kill $(pgrep -P "$DEADLINE_PID") "$DEADLINE_PID" 2>/dev/null
    fi
    [ -n "$STEP_PID" ] && kill "$STEP_PID" 2>/dev/null
    [ -n "$RECV_PID" ] && kill "$RECV_PID" 2>/dev/null
    [ -n "$RECV_TOKEN_PID" ] && kill "$RECV_TOKEN_PID" 2>/dev/null
    if [ -z "$PID1" ] && [ -n "$NSPAWN_PID" ]; then
        PID1=$(pgrep -P "$NSPAWN_PID" -x systemd | head -n 1)
    fi
    if [ -n "$PID1" ]; then kill -9 "$PID1" 2>/dev/null; fi
    if [ -n "$NSPAWN_PID" ]; then
        for _ in $(seq 50); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$NSPAWN_PID" 2>/dev/null
    fi
    if mountpoint -q "$ROOT" 2>/dev/null; then
        umount "$ROOT" 2>/dev/null || umount -l "$ROOT"
    fi
    rm -rf "$BASE"
    log "container $NAME torn down ($(since "$T_START")s in all)"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Run a command inside the container (all its namespaces), never for more
# than a minute, so that a hung systemctl cannot stall the run.
c() { timeout 60 nsenter -t "$PID1" -a "$@"; }
# The same, as the recorder would (a member of group cis490, umask 002).
as_recorder() { c runuser -u recorder -- sh -c "umask 002; $1"; }

journal_excerpt() {
    echo "    --- journal (cis490 units, last 40 lines) ---"
    c journalctl --no-pager -q -o short-monotonic -n 400 2>/dev/null |
        grep -E 'cis490|ship-episode|ship-scanner|quarantine-prune|doctor' | tail -n 40 |
        sed 's/^/    /' || true
}

# Globals set inside a step (which runs in a subshell) go through a file.
save_state() {
    local v
    for v in PID1 NSPAWN_PID RECV_PID RECV_TOKEN_PID PORT; do
        printf '%s=%q\n' "$v" "${!v}"
    done >"$BASE/state"
}
load_state() { [ ! -f "$BASE/state" ] || . "$BASE/state"; }

# step NAME FUNCTION: run it in a subshell with errexit, so that the first
# failing check ends it; print ok/FAILED, its duration and its output.
# Never call it from a condition (`step x || ...`): bash would then ignore
# errexit inside. It sets step_ok instead.
step_ok=1
step() {
    local name=$1 t0 rc
    shift
    t0=$(now)
    set +e
    # In the background and waited for, so that a TERM/INT tears down at once.
    (set -e; "$@") >"$BASE/step.out" 2>&1 &
    STEP_PID=$!
    wait "$STEP_PID"
    rc=$?
    STEP_PID=
    set -e
    load_state
    if [ $rc = 0 ]; then
        passed=$((passed + 1))
        printf 'step %-28s ... ok (%ss)\n' "$name" "$(since "$t0")"
    else
        failed=$((failed + 1))
        printf 'step %-28s ... FAILED (%ss)\n' "$name" "$(since "$t0")"
    fi
    sed 's/^/    /' "$BASE/step.out"
    if [ $rc != 0 ] && [ -n "$PID1" ]; then journal_excerpt; fi
    step_ok=$((rc == 0))
}
# After a step the rest depends on: stop here if it failed.
required() {
    [ "$step_ok" = 1 ] && return
    echo "$passed passed, $failed failed"
    exit 1
}
# A step that cannot run yet: counted, never as passed.
pending_step() {
    pending=$((pending + 1))
    printf 'step %-28s ... PENDING (%s)\n' "$1" "$2"
}
have_bin() { [ -x "$target/release/$1" ]; }

# Fail a step with a message.
fail() { echo "$*"; return 1; }

# Wait up to $2 seconds for the shell condition $1.
wait_for() {
    local cond=$1 limit=$2 t0
    t0=$(now)
    until eval "$cond"; do
        awk -v a="$(since "$t0")" -v l="$limit" 'BEGIN { exit !(a > l) }' && return 1
        sleep 0.01
    done
}

unit_prop() { c systemctl show -p "$2" --value "$1"; }
shipped_by() { # ID -> the binary that logged OUTCOME=shipped for it
    local b
    for b in ship-episode ship-scanner; do
        if [ -n "$(c journalctl --no-pager -q -o cat -t $b EPISODE_ID="$1" OUTCOME=shipped)" ]; then
            echo $b
        fi
    done
}
journal_has() { # ID OUTCOME [HTTP_STATUS]
    local extra=()
    [ -z "${3:-}" ] || extra=(HTTP_STATUS="$3")
    [ -n "$(c journalctl --no-pager -q -o cat EPISODE_ID="$1" OUTCOME="$2" "${extra[@]}")" ]
}

# make_episode ID: as the recorder, stage in episodes/.in-ID (hidden: the
# glob and the shipper ignore it), then rename it in. Prints the time of
# the rename (taken just before it).
make_episode() {
    as_recorder "mkdir $EP/.in-$1 && head -c 300000 /dev/urandom > $EP/.in-$1/data.bin &&
        echo '{\"id\":\"$1\"}' > $EP/.in-$1/meta.json && : > $EP/.in-$1/done.marker &&
        date +%s.%N && mv $EP/.in-$1 $EP/$1"
}

# The episode arrived: shipped/ID exists in the container and the archive
# in the receiver's store holds the same data.bin.
check_intact() {
    local id=$1 member
    [ -f "$STORE/$HOST_ID/$id.tar.gz" ] || fail "$id: not in the receiver's store"
    member=$(tar -tzf "$STORE/$HOST_ID/$id.tar.gz" | grep 'data\.bin$' | head -n 1)
    [ -n "$member" ] || fail "$id: archive has no data.bin"
    [ "$(tar -xzOf "$STORE/$HOST_ID/$id.tar.gz" "$member" | sha256sum)" = \
      "$(sha256sum <"$ROOT$DATA/shipped/$id/data.bin")" ] || fail "$id: data.bin differs"
}

write_config() { # URL [extra toml]
    c sh -c "cat > $CONF" <<EOF
host_id = "$HOST_ID"
[paths]
data_root = "$DATA"
[receiver]
url = "$1"
${2:-}
[shipper]
scan_interval_s = $SCAN_INTERVAL
request_timeout_s = 10
# Short, so that the steps with an unavailable receiver stay short (590 s
# by default; the fleet simulator and tests/scanner.rs cover the default).
receiver_probe_interval_s = 5
[retention]
keep_local_for_days = 7
quarantine_keep_days = 30
EOF
}

behave() { curl -fsS -X PUT --data "$2" "http://127.0.0.1:$PORT/_control/behave/$1" >/dev/null; }
unbehave() { curl -fsS -X DELETE "http://127.0.0.1:$PORT/_control/behave/$1" >/dev/null; }

start_receiver() { # STORE OUTFILE [args...] -> sets REPLY to the pid
    local store=$1 out=$2
    shift 2
    "$target/release/cis490-dev-receiver" --store "$store" "$@" >"$out" 2>"$out.err" &
    REPLY=$!
    wait_for "grep -q '^listening on http://127.0.0.1:' '$out'" 5 ||
        { cat "$out.err" >&2; return 1; }
}
port_of() { sed -n 's|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$1" | head -n 1; }

# ---------------------------------------------------------------- steps

do_build() {
    # --workspace: the lab-host binaries and the dev receiver the steps ship to.
    (cd "$here" && cargo build --release --locked --workspace --bins \
        --example busy --example gen_episode 2>&1 | tail -n 1)
    missing=()
    for b in ship-episode ship-scanner quarantine-prune doctor cis490-dev-receiver; do
        have_bin "$b" || missing+=("$b")
    done
    [ ${#missing[@]} = 0 ] || echo "not built yet: ${missing[*]}"
    have_bin ship-episode && have_bin cis490-dev-receiver
}

do_boot() {
    command -v systemd-nspawn >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq systemd-container >/dev/null; }
    mkdir -p "$BASE/upper" "$BASE/work" "$ROOT"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$BASE/upper,workdir=$BASE/work" "$ROOT"
    # basic.target (timers, paths, sockets): whatever services the host has
    # enabled for multi-user.target (a database, ...) stay out of the way.
    # The checkout and the build are bound in at the same paths: through the
    # overlay alone they would be hidden when they live under /tmp, which
    # nspawn mounts afresh (a CI clone may well be there).
    local binds=(--bind-ro="$here")
    case $target in "$here"/*) ;; *) binds+=(--bind-ro="$target") ;; esac
    systemd-nspawn -D "$ROOT" --register=no --keep-unit --boot --console=passive \
        "${binds[@]}" -M "$NAME" -- --unit=basic.target >"$BASE/nspawn.log" 2>&1 </dev/null &
    NSPAWN_PID=$!
    save_state
    # nspawn's first child is a helper; PID 1 is the systemd it execs.
    wait_for '[ -n "$(pgrep -P "$NSPAWN_PID" -x systemd | head -n 1)" ]' 10 || fail "no container PID 1"
    PID1=$(pgrep -P "$NSPAWN_PID" -x systemd | head -n 1)
    save_state
    local state=
    wait_for 'state=$(c systemctl is-system-running 2>/dev/null); [ "$state" = running ] || [ "$state" = degraded ]' 60 ||
        fail "system state: $state"
    echo "container $NAME: PID 1 = $PID1, state $state, $(c systemctl --version | head -n 1)"
}

# Run scripts/install.sh inside the container, with the binaries built on
# the host (same path through the overlay).
install_in_container() {
    local allow=0
    for b in ship-scanner quarantine-prune doctor; do have_bin "$b" || allow=1; done
    c env NO_BUILD=1 ALLOW_MISSING_BINARIES=$allow CARGO_TARGET_DIR="$target" "$here/scripts/install.sh"
}

do_install() {
    local out
    # The container is an overlay of this machine's root: a cis490.prom that
    # a run outside any container left in node_exporter's directory would
    # stop install.sh from linking it. A lab host starts with none.
    c sh -c '[ -L /var/lib/prometheus/node-exporter/cis490.prom ] ||
        rm -f /var/lib/prometheus/node-exporter/cis490.prom'
    out=$(install_in_container 2>&1) || { echo "$out"; return 1; }
    grep -q 'systemctl enable --now cis490-ship-episode.path' <<<"$out" ||
        fail "install.sh did not print the enable command: $out"
    [ "$(c stat -c '%a %U:%G' "$EP")" = "2775 cis490:cis490" ] || fail "episodes/: $(c stat -c '%a %U:%G' "$EP")"
    [ "$(c stat -c '%a %U:%G' "$CONF")" = "640 root:cis490" ] || fail "config: $(c stat -c '%a %U:%G' "$CONF")"
    [ "$(c stat -c '%a' /etc/cis490/credentials)" = 700 ] || fail "credentials dir not 0700"
    c getent passwd cis490 | grep -q nologin || fail "no system user cis490"
    for u in cis490-ship-episode.path cis490-ship-episode.service cis490-ship-scanner.service \
        cis490-quarantine-prune.timer cis490-quarantine-prune.service; do
        [ "$(unit_prop "$u" LoadState)" = loaded ] || fail "$u not loaded"
    done
    # Re-running keeps an edited config.
    c sh -c "echo '# edited' >> $CONF"
    install_in_container >/dev/null 2>&1
    c grep -q '^# edited' "$CONF" || fail "re-install overwrote the config"
    c useradd --create-home --groups cis490 recorder
    grep -q WARNING <<<"$out" && grep WARNING <<<"$out"
    true
}

do_verify() {
    local out
    out=$(c sh -c 'cd /etc/systemd/system && systemd-analyze verify cis490-ship-episode.path \
        cis490-ship-episode.service cis490-ship-scanner.service \
        cis490-quarantine-prune.timer cis490-quarantine-prune.service' 2>&1) ||
        fail "systemd-analyze verify failed: $out"
    [ -z "$out" ] || fail "systemd-analyze verify is not clean: $out"
}

do_security() {
    local u score bad=0
    for u in cis490-ship-episode cis490-ship-scanner cis490-quarantine-prune; do
        score=$(c systemd-analyze security --no-pager "$u.service" |
            sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
        [ -n "$score" ] || { echo "$u: no score"; bad=1; continue; }
        echo "$u.service: $score"
        awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { echo "  above 2.0"; bad=1; }
    done
    return $bad
}

do_receiver() {
    start_receiver "$STORE" "$BASE/recv.out"
    RECV_PID=$REPLY
    PORT=$(port_of "$BASE/recv.out")
    save_state
    # nspawn without --private-network shares the host's network namespace.
    c curl -fsS "http://127.0.0.1:$PORT/_control/stats" >/dev/null ||
        fail "receiver on 127.0.0.1:$PORT not reachable from the container"
    write_config "http://127.0.0.1:$PORT"
    echo "receiver on 127.0.0.1:$PORT (host), store $STORE"
}

do_enable_path() {
    c systemctl enable --now cis490-ship-episode.path cis490-quarantine-prune.timer 2>/dev/null
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] || fail "path unit not active"
}

# Rename-in is shipped by the path unit alone (the scanner is not running).
do_rename_in() {
    local id t_mv t worst=0
    for id in ren-1 ren-2 ren-3; do
        t_mv=$(make_episode "$id")
        wait_for "[ -d '$ROOT$DATA/shipped/$id' ]" 5 || fail "$id not shipped within 5 s"
        t=$(since "$t_mv")
        check_intact "$id"
        [ "$(shipped_by "$id")" = ship-episode ] || fail "$id shipped by '$(shipped_by "$id")'"
        echo "$id: renamed in → shipped/ in ${t}s (by ship-episode via the path unit)"
        worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
    done
    awk -v w="$worst" 'BEGIN { exit !(w < 1.0) }' || fail "slowest ${worst}s, not under 1 s"
    echo "(the seed's daemon polled every 5 s)"
}

# The recorder's hidden staging directory with done.marker in it must not
# trigger the path unit (glob * skips dot names), else it would loop.
do_staging_ignored() {
    local before after
    before=$(unit_prop cis490-ship-episode.service ExecMainStartTimestampMonotonic)
    as_recorder "mkdir $EP/.in-stage && : > $EP/.in-stage/done.marker"
    sleep 1
    after=$(unit_prop cis490-ship-episode.service ExecMainStartTimestampMonotonic)
    [ "$before" = "$after" ] || fail "a hidden staging directory started ship-episode"
    as_recorder "rm -r $EP/.in-stage"
}

# Eight episodes, one every 0.2 s: more starts than the default start limit
# (5 in 10 s) allows; the path unit must keep watching.
do_burst() {
    local i t0
    t0=$(now)
    for i in $(seq 1 8); do make_episode "burst-$i" >/dev/null; sleep 0.2; done
    wait_for "[ -d '$ROOT$DATA/shipped/burst-8' ]" 5 || fail "burst-8 not shipped"
    for i in $(seq 1 8); do [ -d "$ROOT$DATA/shipped/burst-$i" ] || fail "burst-$i not shipped"; done
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] ||
        fail "path unit $(unit_prop cis490-ship-episode.path ActiveState) ($(unit_prop cis490-ship-episode.path Result))"
    echo "8 episodes in $(since "$t0")s, path unit still active"
}

# The receiver answers 503: the first upload pauses the receiver for this
# host, every episode is still claimed into the outbox (not uploaded: no
# burst at an overloaded receiver), the path unit stays active, and once the
# pause is over the next episode is shipped by it.
do_503() {
    local i id uploads pause_end
    for i in $(seq 1 6); do behave "r503-$i" status:503; done
    for i in $(seq 1 6); do make_episode "r503-$i" >/dev/null; sleep 0.1; done
    for i in $(seq 1 6); do
        id=r503-$i
        wait_for "[ -d '$ROOT$DATA/outbox/$id' ]" 5 || fail "$id not claimed into the outbox"
    done
    wait_for "journal_has r503-1 retry 503" 3 || fail "r503-1: no OUTCOME=retry HTTP_STATUS=503 in the journal"
    [ -e "$ROOT$DATA/.receiver-pause.json" ] || fail "no receiver pause after a 503"
    uploads=0
    for i in $(seq 1 6); do journal_has "r503-$i" retry 503 && uploads=$((uploads + 1)); done
    [ "$uploads" -le 2 ] || fail "$uploads of 6 episodes uploaded into a 503 (a burst)"
    sleep 1
    [ -z "$(ls -A "$ROOT$EP")" ] || fail "episodes/ not empty: $(ls -A "$ROOT$EP")"
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] ||
        fail "path unit $(unit_prop cis490-ship-episode.path ActiveState) ($(unit_prop cis490-ship-episode.path Result))"
    [ "$(unit_prop cis490-ship-episode.service ActiveState)" != failed ] ||
        fail "ship-episode.service failed on a 503"
    pause_end=$(sed -n 's/.*"until": *\([0-9]*\).*/\1/p' "$ROOT$DATA/.receiver-pause.json")
    wait_for "[ \$(date +%s) -ge ${pause_end:-0} ]" 10 || fail "the pause does not end"
    make_episode after-503 >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/after-503' ]" 3 || fail "after-503 not shipped by the path unit"
    for i in $(seq 1 6); do unbehave "r503-$i"; done
    echo "6 episodes into a 503: $uploads uploaded, all claimed into outbox/, path unit active; after the pause the next one shipped"
}

# An episode that cannot be claimed (here: an unusable config) makes the
# glob keep matching: after 3 s, ship-episode retries every 5 s instead of
# spinning,
# the path unit never fails, and it heals once the config is fixed.
do_unclaimable() {
    local starts t0 t
    c cp -p "$CONF" "$CONF.good"
    c sh -c "echo 'no_such_key = 1' >> $CONF"
    t0=$(now)
    make_episode stuck-1 >/dev/null
    sleep 4.5
    t=$(now)
    sleep 6
    starts=$(c journalctl --no-pager -q -o cat -t ship-episode --since "@${t%.*}" | grep -c 'no_such_key' || true)
    [ "$starts" -ge 1 ] && [ "$starts" -le 3 ] || fail "$starts runs in 6 s (want 1 to 3)"
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] || fail "path unit not active"
    c mv "$CONF.good" "$CONF"
    t0=$(now)
    wait_for "[ -d '$ROOT$DATA/shipped/stuck-1' ]" 8 || fail "stuck-1 not shipped after the fix"
    t=$(since "$t0")
    echo "bad config: $starts attempts in 6 s once the episode was over 3 s old, path unit active; shipped ${t}s after the fix"
}

# Be a good guest: a CPU-bound stand-in for the recorder keeps every core
# busy (a transient service, so it competes as any service does) while a
# 256 MiB mixed episode ships through the path unit. It must keep >= 90 % of
# its solo throughput with the shipped units; the same run with the units'
# priorities reset to the defaults is printed for comparison.
busy_work() { # SECONDS -> work=N of the stand-in, run as a service
    c systemd-run --quiet --wait --pipe --collect -p User=recorder \
        "$target/release/examples/busy" "$1" | sed -n 's/^work=//p'
}
ship_beside_busy() { # ID -> work of the stand-in while ID ships (in $BASE/busy-ID.out)
    local id=$1
    "$target/release/examples/gen_episode" "$ROOT$EP/.in-$id" 256 >/dev/null
    c chown -R recorder:cis490 "$EP/.in-$id"
    c chmod -R g+rwX "$EP/.in-$id"
    c touch "$EP/.in-$id/done.marker"
    busy_work "$FAIR_SECONDS" >"$BASE/busy-$id.out" &
    local busy=$!
    sleep 0.3
    c mv "$EP/.in-$id" "$EP/$id"
    wait "$busy"
    # Still shipping when the stand-in stopped: it competed the whole time.
    if [ -d "$ROOT$DATA/shipped/$id" ]; then echo done >"$BASE/busy-$id.early"; fi
}
shipped_after_busy() { # ID: it was shipped and the receiver stored it
    wait_for "[ -d '$ROOT$DATA/shipped/$1' ]" 120 || fail "$1 not shipped"
    [ -f "$STORE/$HOST_ID/$1.tar.gz" ] || fail "$1: not in the receiver's store"
}
do_fairness() {
    local solo_a solo_b before after d=/etc/systemd/system/cis490-ship-episode.service.d
    [ -x "$target/release/examples/busy" ] || fail "examples/busy not built"
    # This machine's kernel shares the CPU per session (sched_autogroup) and,
    # on its cgroup-v1 host, gives the container no cpu controller: neither
    # the slices' CPUWeight nor a nice value could act. A lab host's systemd
    # puts the units in cis490.slice under the cpu controller, where
    # autogroups do not apply; here, per-task scheduling stands in for it
    # (restored after the step and at teardown).
    local autogroup=/proc/sys/kernel/sched_autogroup_enabled
    if [ -w "$autogroup" ]; then
        cp "$autogroup" "$BASE/autogroup.saved"
        echo 0 >"$autogroup"
    fi
    # Each measurement beside shipping is paired with a solo run just before
    # it, so that a change in the machine's load between them cancels out.
    c mkdir -p $d
    c sh -c "printf '[Service]\nNice=0\nCPUWeight=100\nIOSchedulingClass=best-effort\nIOWeight=100\n' > $d/95-e2e-defaults.conf"
    c systemctl daemon-reload
    solo_a=$(busy_work "$FAIR_SECONDS")
    ship_beside_busy fair-defaults
    shipped_after_busy fair-defaults
    c rm $d/95-e2e-defaults.conf
    c systemctl daemon-reload
    solo_b=$(busy_work "$FAIR_SECONDS")
    ship_beside_busy fair-units
    [ ! -e "$BASE/busy-fair-units.early" ] ||
        fail "fair-units shipped before the stand-in stopped: no contention measured"
    shipped_after_busy fair-units
    before=$(cat "$BASE/busy-fair-defaults.out")
    after=$(cat "$BASE/busy-fair-units.out")
    [ "${solo_a:-0}" -gt 0 ] && [ "${solo_b:-0}" -gt 0 ] && [ "${before:-0}" -gt 0 ] &&
        [ "${after:-0}" -gt 0 ] || fail "the stand-in did no work"
    awk -v sa="$solo_a" -v b="$before" -v sb="$solo_b" -v a="$after" 'BEGIN {
        printf "recorder stand-in kept %.1f%% of its solo throughput beside a 256 MiB episode shipping under the units (%.1f%% with default priorities); work: solo %d, beside shipping %d; default priorities: solo %d, beside %d\n", 100*a/sb, 100*b/sa, sb, a, sa, b }'
    restore_autogroup
    awk -v s="$solo_b" -v a="$after" 'BEGIN { exit !(a >= 0.9 * s) }' ||
        fail "the recorder kept less than 90% of its solo throughput"
}
restore_autogroup() {
    [ ! -f "$BASE/autogroup.saved" ] ||
        { cat "$BASE/autogroup.saved" >/proc/sys/kernel/sched_autogroup_enabled && rm "$BASE/autogroup.saved"; }
}

# Entries the glob episodes/*/done.marker matches but that can never ship
# (an invalid id, a symlink to a directory elsewhere): ship-episode moves
# them aside to episodes/.rejected-NAME, so the path unit stops triggering
# on them instead of restarting the service forever.
do_unshippable_set_aside() {
    local before after
    as_recorder "mkdir $EP/.in-bad && : > $EP/.in-bad/done.marker && mv $EP/.in-bad $EP/bad.json"
    as_recorder "mkdir -p /tmp/elsewhere && : > /tmp/elsewhere/done.marker && ln -s /tmp/elsewhere $EP/linked"
    wait_for "[ -d '$ROOT$EP/.rejected-bad.json' ] && [ -L '$ROOT$EP/.rejected-linked' ]" 5 ||
        fail "not set aside: $(ls -A "$ROOT$EP")"
    [ ! -e "$ROOT$EP/bad.json" ] && [ ! -e "$ROOT$EP/linked" ] || fail "still in the glob: $(ls -A "$ROOT$EP")"
    c test -e /tmp/elsewhere/done.marker || fail "the symlink's target was touched"
    sleep 1
    before=$(unit_prop cis490-ship-episode.service ExecMainStartTimestampMonotonic)
    sleep 2
    after=$(unit_prop cis490-ship-episode.service ExecMainStartTimestampMonotonic)
    [ "$before" = "$after" ] || fail "ship-episode still being started after the set-aside"
    [ "$(unit_prop cis490-ship-episode.path ActiveState)" = active ] || fail "path unit not active"
    c journalctl --no-pager -q -o cat -t ship-episode | grep -q 'set aside episodes/"bad.json"' ||
        fail "no journal line about the set-aside"
    as_recorder "rm -rf $EP/.rejected-bad.json $EP/.rejected-linked /tmp/elsewhere"
    echo "bad.json and a symlink set aside as .rejected-*; no further starts; path unit active"
}

do_scanner_ready() {
    local t0 t
    t0=$(now)
    c systemctl enable --now cis490-ship-scanner.service 2>/dev/null
    t=$(since "$t0")
    [ "$(unit_prop cis490-ship-scanner.service Type)" = notify ] || fail "not Type=notify"
    [ "$(unit_prop cis490-ship-scanner.service ActiveState)/$(unit_prop cis490-ship-scanner.service SubState)" = active/running ] ||
        fail "scanner $(unit_prop cis490-ship-scanner.service ActiveState)"
    [ "$(unit_prop cis490-ship-scanner.service WatchdogUSec)" = 3min ] ||
        fail "WatchdogSec is $(unit_prop cis490-ship-scanner.service WatchdogUSec)"
    echo "start returned after READY=1: active/running in ${t}s"
}

# The six 503 episodes wait in the outbox; the receiver recovered; the
# scanner's retry ships them.
do_retry_after_recovery() {
    local i t0
    t0=$(now)
    for i in $(seq 1 6); do
        wait_for "[ -d '$ROOT$DATA/shipped/r503-$i' ]" 20 || fail "r503-$i not shipped after recovery"
        check_intact "r503-$i"
    done
    [ "$(shipped_by r503-1)" = ship-scanner ] || fail "r503-1 shipped by '$(shipped_by r503-1)'"
    echo "6 retried episodes shipped by the scanner in $(since "$t0")s"
}

# done.marker written inside a directory already in episodes/: the path
# unit cannot see it, the scanner's next sweep ships it.
do_straggler() {
    local id=${1:-straggler-1} t0 t
    as_recorder "mkdir $EP/$id && head -c 1000 /dev/urandom > $EP/$id/data.bin"
    sleep 0.3
    t0=$(as_recorder "date +%s.%N && : > $EP/$id/done.marker")
    wait_for "[ -d '$ROOT$DATA/shipped/$id' ]" $((SCAN_INTERVAL + 5)) ||
        fail "$id not shipped within $((SCAN_INTERVAL + 5)) s"
    t=$(since "$t0")
    check_intact "$id"
    [ "$(shipped_by "$id")" = ship-scanner ] || fail "$id shipped by '$(shipped_by "$id")'"
    echo "$id: done.marker written in place → shipped by the scanner's sweep in ${t}s (scan_interval_s = $SCAN_INTERVAL)"
}

do_watchdog() {
    local u=cis490-ship-scanner.service n0 p0 t0 t_abort
    c mkdir -p /etc/systemd/system/$u.d
    c sh -c "printf '[Service]\nWatchdogSec=5s\nRestartSec=1s\nLimitCORE=0\n' > /etc/systemd/system/$u.d/90-e2e.conf"
    c systemctl daemon-reload
    c systemctl restart $u
    [ "$(unit_prop $u WatchdogUSec)" = 5s ] || fail "drop-in not applied"
    n0=$(unit_prop $u NRestarts)
    p0=$(unit_prop $u MainPID)
    t0=$(now)
    c kill -STOP "$p0"
    wait_for "c journalctl --no-pager -q -u $u --since '@${t0%.*}' | grep -q 'Watchdog timeout'" 15 ||
        fail "no 'Watchdog timeout' within 15 s"
    t_abort=$(since "$t0")
    c journalctl --no-pager -q -u $u --since "@${t0%.*}" | grep -q "Killing process $p0 .*SIGABRT" ||
        fail "no SIGABRT for $p0"
    awk -v t="$t_abort" 'BEGIN { exit !(t >= 4.5 && t <= 7) }' || fail "watchdog fired after ${t_abort}s, not ~5 s"
    wait_for "[ \"\$(unit_prop $u NRestarts)\" = $((n0 + 1)) ] && [ \"\$(unit_prop $u ActiveState)\" = active ]" 15 ||
        fail "no restart (NRestarts $(unit_prop $u NRestarts), $(unit_prop $u ActiveState))"
    [ "$(unit_prop $u MainPID)" != "$p0" ] || fail "same MainPID after restart"
    echo "SIGSTOP → 'Watchdog timeout' + SIGABRT after ${t_abort}s (WatchdogSec=5s), NRestarts $n0 → $((n0 + 1)), active again after $(since "$t0")s"
    do_straggler straggler-after-watchdog
}

do_timer() {
    local line next
    line=$(c systemctl list-timers --all --no-legend --no-pager cis490-quarantine-prune.timer)
    [ -n "$line" ] || fail "timer not listed"
    next=$(unit_prop cis490-quarantine-prune.timer NextElapseUSecMonotonic)
    [ -n "$next" ] && [ "$next" != 0 ] && [ "$next" != infinity ] || fail "no NEXT time: $line"
    case $line in -* | n/a*) fail "list-timers shows no NEXT: $line" ;; esac
    echo "$line"
}

# Two episodes quarantined for real (the receiver answers 400), one of them
# aged to 40 days by its sidecar's entered_at; the prune service removes
# that one only (quarantine_keep_days = 30).
do_prune() {
    local id old_at
    for id in q-old q-fresh; do
        behave "$id" status:400
        make_episode "$id" >/dev/null
        wait_for "[ -d '$ROOT$DATA/quarantine/$id' ]" 5 || fail "$id not quarantined on a 400"
        unbehave "$id"
    done
    [ "$(unit_prop cis490-ship-episode.service Result)" = success ] ||
        fail "ship-episode.service Result=$(unit_prop cis490-ship-episode.service Result) after a quarantine (exit 65)"
    old_at=$(($(date +%s) - 40 * 86400))
    c runuser -u cis490 -- sed -i "s/\"entered_at\": *[0-9][0-9]*/\"entered_at\": $old_at/" "$DATA/quarantine/q-old.json"
    c grep -q "\"entered_at\": $old_at," "$DATA/quarantine/q-old.json" || fail "could not age q-old"
    c systemctl start cis490-quarantine-prune.service ||
        fail "prune service failed: $(unit_prop cis490-quarantine-prune.service Result)"
    [ ! -e "$ROOT$DATA/quarantine/q-old" ] && [ ! -e "$ROOT$DATA/quarantine/q-old.json" ] || {
        c ls -la "$DATA/quarantine"
        c journalctl --no-pager -q -o cat -t quarantine-prune
        fail "40-day-old quarantined episode not pruned (keep 30 days)"
    }
    [ -d "$ROOT$DATA/quarantine/q-fresh" ] || fail "fresh quarantined episode was deleted"
    [ -d "$ROOT$DATA/shipped/ren-1" ] || fail "prune touched shipped/ren-1 (7-day retention)"
    c journalctl --no-pager -q -o cat -t quarantine-prune | tail -n 3
    echo "pruned q-old (40 days), kept q-fresh, under PrivateNetwork=yes"
}

do_doctor() {
    local out rc=0
    out=$(c /usr/local/bin/doctor 2>&1) || rc=$?
    printf '%s\n' "$out" | head -n 40
    echo "(doctor exit status $rc)"
    # It must report what this test did to the host.
    # One or two of the six 503 episodes were uploaded: the rest waited out
    # the receiver pause in the outbox.
    grep -Eq 'HTTP 503 ×[12]\b' <<<"$out" || fail "doctor does not report the 503s"
    grep -q 'HTTP 400 ×2' <<<"$out" || fail "doctor does not report the two quarantines"
    grep -q 'cis490-ship-episode.path is watching' <<<"$out" || fail "doctor does not see the path unit watching"
    if have_bin ship-scanner; then
        grep -q 'killed by its watchdog 1 time(s).*restarted (NRestarts=1)' <<<"$out" ||
            fail "doctor does not report the watchdog kill and restart"
    fi
}

# The bearer token comes through LoadCredential= from a root-only file that
# user cis490 cannot read, once install.sh has written the drop-in.
do_credential() {
    local tokfile=$BASE/token id=cred-1
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$tokfile"
    start_receiver "$STORE" "$BASE/recv-token.out" --bearer-token-file "$tokfile"
    RECV_TOKEN_PID=$REPLY
    save_state
    local tport
    tport=$(port_of "$BASE/recv-token.out")
    # Control: this receiver refuses an upload without the token.
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data x "http://127.0.0.1:$tport/episodes/$HOST_ID/probe")
    [ "$code" = 401 ] || fail "token receiver answered $code without a token, not 401"
    c sh -c 'umask 077 && cat > /etc/cis490/credentials/bearer-token' <"$tokfile"
    install_in_container >/dev/null 2>&1
    c grep -q 'LoadCredential=bearer-token:/etc/cis490/credentials/bearer-token' \
        /etc/systemd/system/cis490-ship-episode.service.d/50-cis490-credentials.conf ||
        fail "install.sh wrote no credentials drop-in"
    c runuser -u cis490 -- cat /etc/cis490/credentials/bearer-token >/dev/null 2>&1 &&
        fail "user cis490 can read the token file directly"
    write_config "http://127.0.0.1:$tport"
    make_episode "$id" >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/$id' ]" 5 || fail "$id not shipped with the credential token"
    [ "$(shipped_by "$id")" = ship-episode ] || fail "$id shipped by '$(shipped_by "$id")'"
    echo "receiver refuses uploads without the token (401); with the token as a credential only root can read, $id shipped via the path unit"
    write_config "http://127.0.0.1:$PORT"
}

do_uninstall() {
    c "$here/scripts/uninstall.sh" >/dev/null
    for f in /usr/local/bin/ship-episode /etc/systemd/system/cis490-ship-episode.path \
        /etc/sysusers.d/cis490.conf /etc/tmpfiles.d/cis490.conf; do
        [ ! -e "$ROOT$f" ] || fail "$f still there"
    done
    [ -z "$(c systemctl list-units --all --no-legend 'cis490-*' | grep -v 'not-found' || true)" ] ||
        fail "units still loaded: $(c systemctl list-units --all --no-legend 'cis490-*')"
    [ -f "$ROOT$CONF" ] || fail "config removed"
    [ -d "$ROOT$DATA/shipped/ren-1" ] || fail "data removed"
    echo "binaries, units and snippets gone; config and data kept"
}

# A staged install with another PREFIX: the units start the binaries from
# that PREFIX, the config is staged, uninstall removes all but the config.
do_destdir_prefix() {
    local d=$BASE/stage
    DESTDIR=$d PREFIX=/opt/cis490 NO_BUILD=1 "$here/scripts/install.sh" >/dev/null
    grep -qx 'ExecStart=/opt/cis490/bin/ship-scanner' "$d/etc/systemd/system/cis490-ship-scanner.service" ||
        fail "ExecStart not rewritten to the PREFIX"
    grep -q '/usr/local' "$d"/etc/systemd/system/cis490-* && fail "a unit still names /usr/local"
    [ -x "$d/opt/cis490/bin/ship-episode" ] || fail "binary not in \$DESTDIR\$PREFIX/bin"
    [ -f "$d/etc/cis490/lab-host.toml" ] || fail "config not staged"
    DESTDIR=$d PREFIX=/opt/cis490 "$here/scripts/uninstall.sh" >/dev/null
    [ -z "$(find "$d" -type f ! -path "$d/etc/cis490/*")" ] ||
        fail "uninstall left: $(find "$d" -type f ! -path "$d/etc/cis490/*")"
    echo "PREFIX=/opt/cis490 DESTDIR=…: ExecStart=/opt/cis490/bin/…; uninstall keeps only /etc/cis490"
}

# Steps kept in files of their own: the metrics, and the Debian package's
# life cycle after the uninstall step.
source "$here/scripts/e2e/metrics.sh"
source "$here/scripts/e2e/package.sh"

# ---------------------------------------------------------------- main

[ "$(id -u)" = 0 ] || { echo "e2e-systemd.sh: needs root (mount, nspawn)" >&2; exit 1; }
mkdir -p "$BASE" "$STORE"
step build do_build
required
# The run after the build stays under 5 minutes: past the deadline, TERM
# ourselves (steps are waited for in the background, so the teardown runs
# at once). The build is not counted: a cold one takes minutes on 2 cores.
deadline=${E2E_DEADLINE_S:-300}
(sleep "$deadline" && echo "e2e: deadline of ${deadline}s reached, stopping" && kill -TERM $$) &
DEADLINE_PID=$!
step install-destdir-prefix do_destdir_prefix
step boot do_boot
required
step install do_install
required
step receiver do_receiver
required

if have_bin ship-scanner && have_bin quarantine-prune; then
    step analyze-verify do_verify
else
    pending_step analyze-verify "ship-scanner/quarantine-prune not built: verify would flag their ExecStart"
fi
step analyze-security do_security
step enable-path-and-timer do_enable_path
step path-rename-in do_rename_in
step path-ignores-staging do_staging_ignored
step path-burst do_burst
step path-503-claims do_503
step path-unclaimable-no-spin do_unclaimable
step path-unshippable-set-aside do_unshippable_set_aside
step recorder-fairness do_fairness
if have_bin ship-scanner; then
    step scanner-ready do_scanner_ready
    step scanner-retry-after-503 do_retry_after_recovery
    step scanner-straggler do_straggler
    step scanner-watchdog do_watchdog
else
    for s in scanner-ready scanner-retry-after-503 scanner-straggler scanner-watchdog; do
        pending_step $s "ship-scanner not built yet"
    done
fi
step timer-listed do_timer
if have_bin quarantine-prune; then
    step prune-service do_prune
else
    pending_step prune-service "quarantine-prune not built yet"
fi
# doctor before credential-token: re-running install.sh restarts the
# scanner, which resets its NRestarts.
if have_bin doctor; then
    step doctor do_doctor
else
    pending_step doctor "doctor not built yet"
fi
step credential-token do_credential
step metrics-node-exporter do_metrics_node_exporter
step uninstall do_uninstall
step package-build do_package_build
required
step package-install do_package_install
required
step package-ship do_package_ship
step package-man-completions do_package_docs
step package-upgrade do_package_upgrade
step package-remove do_package_remove
step package-purge do_package_purge
step package-install-configured do_package_install_configured

[ $pending = 0 ] || echo "$pending pending (not run, not passed)"
echo "$passed passed, $failed failed"
[ $failed = 0 ] && [ $pending = 0 ]
