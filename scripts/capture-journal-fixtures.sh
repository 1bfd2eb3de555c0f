#!/usr/bin/env bash
# Capture real `journalctl -o json` output (and `systemctl show` output) for
# the doctor's tests, from a real systemd 252 booted in a throw-away
# container (recipe: /work/shared/systemd-facts.md). Not run in CI.
#
#   scripts/capture-journal-fixtures.sh [OUT_DIR]   (default tests/fixtures/journal)
#
# Needs root, systemd-nspawn (apt-get install systemd-container), python3,
# and the binaries built (`cargo build --bins`, CARGO_TARGET_DIR honoured).
# Every scenario runs the real ship-episode under systemd-run with the real
# unit names, so it logs to the journal natively, against
# scripts/fixture-receiver.py which answers with the status named by the
# episode id's prefix (s412-*, s400-*, s401-*, s503-*, ok-*).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$here/tests/fixtures/journal}")
target=${CARGO_TARGET_DIR:-$here/target}
bin=$target/debug/ship-episode
[[ -x $bin ]] || { echo "build first: cargo build --bins ($bin missing)" >&2; exit 1; }
mkdir -p "$out"

base=$(mktemp -d /dev/shm/cis490-fixtures.XXXXXX)
root=$base/root
mkdir -p "$base/upper" "$base/work" "$root"
nspawn_pid=""
recv_pid=""
pid1=""

teardown() {
    set +e
    [[ -n $recv_pid ]] && kill "$recv_pid" 2>/dev/null
    [[ -n $pid1 ]] && kill -9 "$pid1" 2>/dev/null
    if [[ -n $nspawn_pid ]]; then
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$nspawn_pid" 2>/dev/null
    fi
    mountpoint -q "$root" && umount -l "$root"
    rm -rf "$base"
}
trap teardown EXIT

mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$root"
install -m 0755 "$bin" "$root/usr/local/bin/ship-episode"
[[ -x $target/debug/doctor ]] && install -m 0755 "$target/debug/doctor" "$root/usr/local/bin/doctor"

systemd-nspawn -D "$root" --register=no --keep-unit --boot --console=passive \
    -M cis490fx >"$base/nspawn.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 100); do
    pid1=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [[ -n $pid1 ]] && break
    sleep 0.1
done
[[ -n $pid1 ]] || { echo "container did not boot" >&2; cat "$base/nspawn.log" >&2; exit 1; }
cx() { nsenter -t "$pid1" -a "$@"; }
for _ in $(seq 100); do
    state=$(cx systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 0.2
done
echo "container PID 1 = $pid1 ($state)"

python3 "$here/scripts/fixture-receiver.py" >"$base/port" &
recv_pid=$!
for _ in $(seq 50); do [[ -s $base/port ]] && break; sleep 0.1; done
port=$(cat "$base/port")

# The doctor's own selection (see src/journal.rs): identifiers OR units.
matches=(SYSLOG_IDENTIFIER=ship-episode SYSLOG_IDENTIFIER=ship-scanner
    SYSLOG_IDENTIFIER=quarantine-prune
    + UNIT=cis490-ship-episode.path + UNIT=cis490-ship-episode.service
    + UNIT=cis490-ship-scanner.service + UNIT=cis490-quarantine-prune.service
    + UNIT=cis490-quarantine-prune.timer
    + _SYSTEMD_UNIT=cis490-ship-episode.service + _SYSTEMD_UNIT=cis490-ship-scanner.service
    + _SYSTEMD_UNIT=cis490-quarantine-prune.service)

cursor() { cx journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
# capture NAME CURSOR: everything the doctor would read since CURSOR.
capture() {
    cx journalctl --sync
    cx journalctl -o json --no-pager --after-cursor="$2" "${matches[@]}" >"$out/$1.jsonl"
    echo "$1: $(wc -l <"$out/$1.jsonl") lines"
}

# scenario NAME URL EPISODE...: a data root with these ready episodes,
# shipped once by ship-episode under the real service name.
scenario() {
    local name=$1 url=$2
    shift 2
    local d=/srv/cis490-fx/$name
    mkdir -p "$root$d/data/episodes"
    cat >"$root$d/lab-host.toml" <<EOF
host_id = "fx-host"
[paths]
data_root = "$d/data"
[receiver]
url = "$url"
bearer_token = "fixture-token"
EOF
    for ep in "$@"; do
        mkdir -p "$root$d/data/episodes/$ep"
        echo "payload $ep" >"$root$d/data/episodes/$ep/frames.bin"
        : >"$root$d/data/episodes/$ep/done.marker"
    done
    local c
    c=$(cursor)
    cx systemd-run --quiet --wait --collect --unit=cis490-ship-episode.service \
        -E CIS490_CONFIG="$d/lab-host.toml" /usr/local/bin/ship-episode || true
    capture "$name" "$c"
}

url=http://127.0.0.1:$port
scenario 412-only "$url" s412-ep-a s412-ep-b s412-ep-c
scenario 400-only "$url" s400-ep-a s400-ep-b
scenario 412-and-400 "$url" s400-ep-c s412-ep-d s412-ep-e ok-ep-f
scenario transient-503 "$url" s503-ep-a s503-ep-b
scenario transient-refused "http://127.0.0.1:1" ok-ep-g
scenario clean "$url" ok-ep-h ok-ep-i
scenario host-401 "$url" s401-ep-a s401-ep-b

c=$(cursor)
sleep 1
capture empty "$c"

# Watchdog: a notify service that never pings the watchdog after READY=1.
c=$(cursor)
cx systemd-run --quiet --unit=cis490-ship-scanner.service -p Type=notify -p NotifyAccess=all \
    -p WatchdogSec=2 -p Restart=on-failure -p RestartSec=1 \
    /bin/sh -c 'systemd-notify --ready; exec sleep infinity'
sleep 7
cx systemctl show cis490-ship-scanner.service >"$out/show-scanner-watchdog.txt"
cx systemctl stop cis490-ship-scanner.service
capture watchdog "$c"

# A path unit whose service leaves the glob matching: start-limit-hit.
d=/srv/cis490-fx/pathfail
mkdir -p "$root$d/episodes/ep-1"
: >"$root$d/episodes/ep-1/done.marker"
cat >"$root/etc/systemd/system/cis490-ship-episode.path" <<EOF
[Path]
PathExistsGlob=$d/episodes/*/done.marker
EOF
cat >"$root/etc/systemd/system/cis490-ship-episode.service" <<EOF
[Service]
Type=oneshot
ExecStart=/bin/true
EOF
# The prune timer: one periodic (has a NEXT), for `systemctl show`.
cat >"$root/etc/systemd/system/cis490-quarantine-prune.timer" <<EOF
[Timer]
OnBootSec=15min
OnUnitActiveSec=1h
EOF
cat >"$root/etc/systemd/system/cis490-quarantine-prune.service" <<EOF
[Service]
Type=oneshot
ExecStart=/bin/true
EOF
cx systemctl daemon-reload
c=$(cursor)
cx systemctl start cis490-ship-episode.path cis490-quarantine-prune.timer
sleep 3
capture path-start-limit "$c"
props=Id,LoadState,ActiveState,SubState,Result,NRestarts,ExecMainStatus,ExecMainCode,NextElapseUSecRealtime,NextElapseUSecMonotonic,LastTriggerUSec,StateChangeTimestamp
cx systemctl show -p "$props" cis490-ship-episode.path cis490-ship-episode.service \
    cis490-ship-scanner.service cis490-quarantine-prune.timer cis490-quarantine-prune.service \
    >"$out/show-units.txt"

# A timer with only OnUnitActiveSec= never fires (NEXT shows -).
cat >"$root/etc/systemd/system/cis490-quarantine-prune.timer" <<EOF
[Timer]
OnUnitActiveSec=1h
EOF
cx systemctl daemon-reload
cx systemctl restart cis490-quarantine-prune.timer
cx systemctl show -p "$props" cis490-quarantine-prune.timer >"$out/show-timer-no-next.txt"

# How -t and -u combine (recorded, see tests/fixtures/journal/README.md).
{
    n() { cx journalctl -o json --no-pager "$@" | wc -l; }
    echo "-t ship-episode: $(n -t ship-episode)"
    echo "-u cis490-ship-episode.service: $(n -u cis490-ship-episode.service)"
    echo "-t ship-episode -u cis490-ship-episode.service: $(n -t ship-episode -u cis490-ship-episode.service)"
    echo "SYSLOG_IDENTIFIER=ship-episode + UNIT=cis490-ship-episode.service: $(n SYSLOG_IDENTIFIER=ship-episode + UNIT=cis490-ship-episode.service)"
    echo "doctor's selection: $(n "${matches[@]}")"
} >"$out/selection-check.txt"
cat "$out/selection-check.txt"

# journalctl as a user outside systemd-journal/adm.
set +e
cx runuser -u nobody -- journalctl -o json --no-pager -n 5 \
    >"$out/denied.stdout" 2>"$out/denied.stderr"
echo $? >"$out/denied.rc"
set -e
echo "denied: rc=$(cat "$out/denied.rc") stderr=$(cat "$out/denied.stderr")"

# Where the doctor binary is built, run it in the container for the record.
if [[ -x $root/usr/local/bin/doctor ]]; then
    set +e
    cx env CIS490_CONFIG=/srv/cis490-fx/412-and-400/lab-host.toml NO_COLOR=1 \
        /usr/local/bin/doctor --since 10min >"$base/doctor.out" 2>&1
    echo "doctor in the container: rc=$?"
    set -e
    cat "$base/doctor.out"
fi
