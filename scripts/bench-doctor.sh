#!/usr/bin/env bash
# Time `doctor --journal-file` on a generated 50,000-line journal (built by
# repeating the captured fixtures with fresh episode ids and timestamps).
#   scripts/bench-doctor.sh [LINES]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lines=${1:-50000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cargo build --release --quiet --bin doctor --manifest-path "$here/Cargo.toml"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen() {
python3 - "$here/tests/fixtures/journal" "$lines" "$1" >"$tmp/big.jsonl" <<'PY'
import glob, json, sys, time
src, n, trim = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "trim"
# What journalctl prints with doctor's --output-fields (src/journal.rs).
keep = set("MESSAGE PRIORITY SYSLOG_IDENTIFIER UNIT _SYSTEMD_UNIT MESSAGE_ID UNIT_RESULT "
           "N_RESTARTS EXIT_CODE EXIT_STATUS EPISODE_ID OUTCOME HTTP_STATUS _PID __CURSOR "
           "__REALTIME_TIMESTAMP __MONOTONIC_TIMESTAMP _BOOT_ID".split())
base = [json.loads(l) for f in sorted(glob.glob(src + "/*.jsonl")) for l in open(f) if l.strip()]
now = int(time.time() * 1e6)
for i in range(n):
    e = dict(base[i % len(base)])
    if trim:
        e = {k: v for k, v in e.items() if k in keep}
    e["__REALTIME_TIMESTAMP"] = str(now - (n - i) * 10_000)
    if "EPISODE_ID" in e:
        e["EPISODE_ID"] = f'{e["EPISODE_ID"]}-{i}'
    print(json.dumps(e))
PY
}
mkdir -p "$tmp/data"
printf 'host_id = "bench"\n[paths]\ndata_root = "%s"\n[receiver]\nurl = "https://collector.wg"\n' \
    "$tmp/data" >"$tmp/lab-host.toml"
# full: every field, as `journalctl -o json` prints without --output-fields;
# trim: only the fields doctor asks journalctl for.
for mode in full trim; do
    gen "$mode"
    echo "$mode: $(wc -l <"$tmp/big.jsonl") lines, $(du -h "$tmp/big.jsonl" | cut -f1)"
    for run in 1 2 3; do
        start=$(date +%s%N)
        "$CARGO_TARGET_DIR/release/doctor" --config "$tmp/lab-host.toml" \
            --journal-file "$tmp/big.jsonl" --json >/dev/null || true
        echo "  run $run: $(( ($(date +%s%N) - start) / 1000000 )) ms"
    done
done
