#!/usr/bin/env bash
# Cost of one ship-scanner pass: a data root with 100,000 shipped, 1,000
# quarantined and 100 pending episodes, against an empty one.
#
# Measured in-process with the hidden `ship-scanner --bench-passes N`: it
# builds the queue (as at start-up), then runs N real passes back to back
# and prints wall time per pass. The 100 pending episodes wait in outbox/
# with a retry due tomorrow (the steady state of a backlog), so the receiver
# (an unreachable address) is never contacted: what is timed is the sweep
# itself. With strace installed, it also counts the syscalls of 10 passes
# that name anything inside shipped/ or quarantine/ (expected: 0).
#
# Target: under 20 ms per pass, flat in the size of shipped/.
# Usage: scripts/bench-scan.sh [passes]   (CARGO_TARGET_DIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
passes=${1:-200}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin ship-scanner
bin=$target/release/ship-scanner

tmp_parent=/dev/shm
[ -w "$tmp_parent" ] || tmp_parent=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp_parent/cis490-bench-scan.XXXXXX")
trap 'rm -rf "$work"' EXIT

# make_root NAME SHIPPED QUARANTINED PENDING
make_root() {
    local root=$work/$1 shipped=$2 quarantined=$3 pending=$4
    mkdir -p "$root"/data/{episodes,outbox,shipped,quarantine}
    local due=$(( $(date +%s) + 86400 ))
    fill() { # DIR PREFIX COUNT: COUNT episode dirs with a file, plus sidecars
        local dir=$1 prefix=$2 n=$3
        [ "$n" -gt 0 ] || return 0
        (cd "$dir" && seq -f "$prefix-%07g" 1 "$n" | xargs mkdir \
            && seq -f "$prefix-%07g/data.bin" 1 "$n" | xargs touch \
            && seq -f "$prefix-%07g.json" 1 "$n" | xargs touch)
    }
    fill "$root/data/shipped" shipped "$shipped"
    fill "$root/data/quarantine" refused "$quarantined"
    if [ "$pending" -gt 0 ]; then
        (cd "$root/data/outbox" && seq -f "pending-%07g" 1 "$pending" | xargs mkdir \
            && seq -f "pending-%07g/data.bin" 1 "$pending" | xargs touch)
        for i in $(seq -f "%07g" 1 "$pending"); do
            printf '{"attempts":4,"next_attempt_at":%d,"last_error":"HTTP 503","claimed_at":0}\n' \
                "$due" > "$root/data/outbox/pending-$i.retry.json"
        done
    fi
    cat > "$root/lab-host.toml" <<TOML
host_id = "bench"
[paths]
data_root = "$root/data"
[receiver]
url = "http://127.0.0.1:9"
[metrics]
textfile = ""
TOML
}

run() {
    local name=$1
    printf '%-34s ' "$name:"
    RUST_LOG=error "$bin" --config "$work/$name/lab-host.toml" --bench-passes "$passes" </dev/null
    if command -v strace >/dev/null; then
        local n
        n=$(RUST_LOG=error strace -f -qq -e trace=%file,%desc -o "$work/$name.strace" \
            "$bin" --config "$work/$name/lab-host.toml" --bench-passes 10 >/dev/null 2>&1;
            grep -cE '(shipped|quarantine)/' "$work/$name.strace" || true)
        printf '%-34s %s\n' "" "syscalls naming shipped/ or quarantine/ entries in 10 passes: $n"
    fi
}

echo "ship-scanner pass time ($passes passes each, data under $tmp_parent)"
make_root empty 0 0 0
make_root "pending-100" 0 0 100
make_root "shipped-100k+quarantine-1k+pending-100" 100000 1000 100
run empty
run "pending-100"
run "shipped-100k+quarantine-1k+pending-100"
