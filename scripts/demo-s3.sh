#!/usr/bin/env bash
# Demo of the S3 receiver: build, start a real S3 implementation
# (moto_server, with signature checks) on loopback, record episodes, ship
# them into the bucket (a big one in multipart), re-ship one (duplicate),
# then show what a wrong secret does (host-level: paused, kept, exit 78,
# doctor's red row). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-moto.sh
ensure_moto

echo "== building (release)"
cargo build --release --bins --quiet
bin=${CARGO_TARGET_DIR:-target}/release
helper=tests/s3/moto_helper.py

work=$(mktemp -d /tmp/cis490-demo-s3.XXXXXX)
moto_pid=""
cleanup() {
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
# Signatures are checked after the helper's four setup calls.
INITIAL_NO_AUTH_ACTION_COUNT=4 moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
done
keys=$(python3 "$helper" "$endpoint" setup lab-episodes)
key_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])' <<<"$keys")
python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$keys" >"$work/s3-secret"
echo "== S3 store (moto_server) at $endpoint, bucket lab-episodes, access key $key_id"

data="$work/data"
mkdir -p "$data/episodes"
config() {
    cat <<TOML
host_id = "demo-lab-1"
[paths]
data_root = "$data"
[receiver]
url = "s3://lab-episodes/raw"
endpoint = "$endpoint"
region = "us-east-1"
access_key_id = "$key_id"
secret_access_key_file = "$1"
# Small parts so the demo's 24 MiB episode goes up in multipart.
multipart_threshold = "8M"
part_size = "5M"
[metrics]
textfile = "$work/cis490.prom"
TOML
}
config "$work/s3-secret" >"$work/lab-host.toml"

record() {
    local id=$1 bytes=$2
    local tmp="$work/recording-$id"
    mkdir -p "$tmp"
    head -c "$bytes" /dev/urandom >"$tmp/camera0.mp4"
    echo '{"operator":"demo"}' >"$tmp/meta.json"
    touch "$tmp/done.marker"
    mv "$tmp" "$data/episodes/$id"
}
record pick-1 2000000
record pick-2 3000000
record long-run 25165824

echo
echo "== ship-episode (plain http endpoint: note the loud warning)"
"$bin/ship-episode" --config "$work/lab-host.toml"
echo
echo "== in the bucket (size, x-amz-meta-sha256):"
for id in pick-1 pick-2 long-run; do
    printf '%-40s %s\n' "raw/demo-lab-1/$id.tar.gz" \
        "$(python3 "$helper" "$endpoint" head "$key_id" "$(cat "$work/s3-secret")" lab-episodes "raw/demo-lab-1/$id.tar.gz")"
done
echo
echo "== a crash after the upload, before the settle: pick-1 is back, the store has it"
rm "$data/shipped/pick-1.json"
mv "$data/shipped/pick-1" "$data/episodes/pick-1"
"$bin/ship-episode" --config "$work/lab-host.toml"
echo
echo "== a wrong secret: nothing is quarantined, the host pauses, exit 78"
echo "not-the-secret" >"$work/wrong-secret"
config "$work/wrong-secret" >"$work/lab-host.toml"
record pick-3 1000000
set +e
"$bin/ship-episode" --config "$work/lab-host.toml"
rc=$?
set -e
echo "(exit status $rc)"
echo
echo "== doctor (its red rows name the fix):"
set +e
"$bin/doctor" --config "$work/lab-host.toml" --journal-file /dev/null | grep -E -A3 'receiver_pause|refused' | head -12
set -e
echo
echo "== where each episode is now"
for state in episodes outbox shipped quarantine; do
    printf '%-11s %s\n' "$state/" "$(cd "$data/$state" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f ' )"
done
