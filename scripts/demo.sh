#!/usr/bin/env bash
# Demo: build, start the dev receiver on loopback, record four sample
# episodes in a temporary data root, ship them, and show where each ended
# and why. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
# `--s3`: the same into an S3-compatible object store (scripts/demo-s3.sh).
[ "${1:-}" = "--s3" ] && exec scripts/demo-s3.sh

echo "== building (release)"
# The lab-host binaries and the dev receiver (a package of its own).
cargo build --release --workspace --bins --quiet
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d /tmp/cis490-demo.XXXXXX)
receiver_pid=""
cleanup() {
    [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The receiver rejects "late" as out of its recording window (412) and
# fails "flaky" once (503), as a real collector might.
"$bin/cis490-dev-receiver" --listen 127.0.0.1:0 --store "$work/receiver" \
    --behave late=status:412 --behave 'flaky=once:status:503,retry-after:1' \
    >"$work/receiver.out" 2>"$work/receiver.log" &
receiver_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' "$work/receiver.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/receiver.out" | head -1)
[ -n "$url" ] || { echo "dev receiver did not start" >&2; cat "$work/receiver.log" >&2; exit 1; }
echo "== dev receiver at $url"

data="$work/data"
mkdir -p "$data/episodes"
cat >"$work/lab-host.toml" <<TOML
host_id = "demo-lab-1"
[paths]
data_root = "$data"
[receiver]
url = "$url"
[metrics]
textfile = "$work/cis490.prom"
TOML

# A recorder writes an episode aside, then renames it into episodes/.
record() {
    local id=$1
    shift
    local tmp="$work/recording-$id"
    mkdir -p "$tmp"
    "$@" "$tmp"
    touch "$tmp/done.marker"
    mv "$tmp" "$data/episodes/$id"
}
sample() {
    head -c 2000000 /dev/urandom >"$1/camera0.mp4"
    seq 1 100000 | sed 's/^/t=/; s/$/ joint=3 torque=0.113/' >"$1/sensors.log"
    echo '{"operator":"demo"}' >"$1/meta.json"
}
weird() {
    sample "$1"
    ln -s /etc/passwd "$1/link-to-passwd"
    mkfifo "$1/a-fifo"
}
record good sample
record late sample
record flaky sample
record weird weird

echo "== episodes recorded:"
ls -1 "$data/episodes"
echo
echo "== ship-episode (what the path unit runs)"
set +e
"$bin/ship-episode" --config "$work/lab-host.toml"
rc=$?
set -e
echo "(exit status $rc: 75 = something is left for a retry. The 503 paused every"
echo " upload of this host, not just 'flaky': the others wait, claimed, in the outbox)"
echo
echo "== once the pause is over, one scanner pass ships the rest (the daemon does this on its own):"
sleep 3
set +e
"$bin/ship-scanner" --config "$work/lab-host.toml" --once
rc=$?
set -e
echo "(exit status $rc: 65 = something was quarantined: the receiver refused 'late' itself)"
echo
echo "== where each episode is now"
for state in episodes outbox shipped quarantine; do
    printf '%-11s %s\n' "$state/" "$(cd "$data/$state" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f ' )"
done
echo
echo "== why 'late' is in quarantine (its sidecar):"
cat "$data/quarantine/late.json"
echo
echo "== what the receiver stored for 'weird': the symlink is a link, the FIFO is absent"
tar tzvf "$work/receiver/demo-lab-1/weird.tar.gz"
echo
echo "== what node_exporter would serve to Prometheus (cis490.prom, counters and backlog):"
grep -E '^cis490_(episodes_total|uploaded_bytes_total|backlog_episodes|quarantine_episodes)' "$work/cis490.prom"
