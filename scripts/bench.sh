#!/usr/bin/env bash
# Benchmarks (release builds). Each part prints its own figures.
#
# 1. ship: `ship-episode` on a generated mixed episode (default 512 MiB: half
#    random "video", half text sensor logs, ~2,000 small JSON files) to the
#    dev receiver, side by side with `tar -cf - | gzip -6 | curl -T -` to a
#    loopback sink and with `tar -cf - | curl -T -` (no compression: the
#    ceiling). Reports wall time, CPU, peak RSS and archive size. Peak RSS is
#    also measured on an episode a quarter of the size, to show it does not
#    grow with the episode.
# 2. scan: one ship-scanner pass with 100,000 shipped, 1,000 quarantined and
#    100 pending episodes, against an empty data root (scripts/bench-scan.sh).
# 3. doctor: 50,000 journal lines (scripts/bench-doctor.sh).
# 4. contention: the shipper's own slowdown when a CPU-bound stand-in for the
#    recorder (examples/busy) keeps every core busy: ship-episode at the
#    units' Nice=19 and at nice 0, idle and beside it (BENCH_CONTEND_MIB,
#    default 32). The recorder's side is measured by the e2e test.
#
# 5. matrix: every shape of episode (below), each shipped by ship-episode,
#    `tar | gzip -6 | curl` and `tar | pigz -6 | curl` (pigz on every core)
#    to the same dev receiver, in one run. Prints markdown tables (wall s,
#    CPU s = user+sys, peak RSS, archive size vs gzip -6, and the ratios
#    against the goals of issue 15). Shapes are generated once and cached in
#    $BENCH_DIR/cis490-shapes (regenerated when a generator's source changes);
#    ship-episode moves the cached episode in and out by rename.
#      mixed   the 512 MiB mixed episode of part 1
#      frames  100,000 files of 4 KiB, incompressible
#      json    20,000 files of 64 KiB, compressible (JSON / CSV)
#      text    one 512 MiB CSV file
#      random  one 512 MiB incompressible file
#      sparse  one 9 GiB sparse file
#
# Usage: scripts/bench.sh [ship|scan|doctor|contention ...]   (default: all four)
#        scripts/bench.sh matrix [SHAPE ...]                  (default: every shape)
#   BENCH_MIB=512  size of the generated episode (ship)
#   BENCH_DIR=/dev/shm  where data, archives and the receiver's store go
#   BENCH_RUNS=1   runs of each variant (the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(ship scan doctor contention)

command -v curl >/dev/null && command -v pigz >/dev/null && [ -x /usr/bin/time ] || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq curl pigz time >/dev/null
}

rpid=""
work=""
cleanup_ship() {
    [ -z "$rpid" ] || kill "$rpid" 2>/dev/null || true
    [ -z "$work" ] || rm -rf "$work"
}

# make_work NAME: a fresh work dir (in RAM where possible), removed on exit.
make_work() {
    local base=${BENCH_DIR:-/dev/shm}
    [ -w "$base" ] || base=${TMPDIR:-/tmp}
    work=$(mktemp -d "$base/cis490-$1.XXXXXX")
    rpid=""
    trap 'cleanup_ship' EXIT
}

# start_receiver BIN_DIR: the dev receiver on a free loopback port; its URL
# is then in "$work/rcv.out".
start_receiver() {
    "$1/cis490-dev-receiver" --listen 127.0.0.1:0 --store "$work/store" \
        >"$work/rcv.out" 2>/dev/null &
    rpid=$!
    for _ in $(seq 100); do grep -q '^listening' "$work/rcv.out" 2>/dev/null && break; sleep 0.05; done
}

bench_ship() {
    local mib=${BENCH_MIB:-512} runs=${BENCH_RUNS:-1}
    # --workspace: the dev receiver too (a package of its own).
    cargo build --release --quiet --workspace --bins --example gen_episode
    local bin=${CARGO_TARGET_DIR:-target}/release
    make_work bench

    echo "== generating a ${mib} MiB episode in $work"
    "$bin/examples/gen_episode" "$work/source/ep" "$mib"
    "$bin/examples/gen_episode" "$work/small/ep" $((mib / 4))

    start_receiver "$bin"
    local url
    url=$(sed -n 's/^listening on //p' "$work/rcv.out")

    # measure LABEL CMD...: appends "label wall user sys rss_kb" to results
    measure() {
        local label=$1; shift
        /usr/bin/time -f "%e %U %S %M" -o "$work/time.out" "$@" >/dev/null 2>"$work/cmd.err" || {
            echo "$label failed:" >&2; cat "$work/cmd.err" >&2; return 1; }
        echo "$label $(cat "$work/time.out")" >>"$work/results"
    }
    ship_once() { # SRC RUN: copy the episode into a fresh data root and ship it
        local src=$1 n=$2 root=$work/root-$2
        rm -rf "$root"; mkdir -p "$root/data/episodes"
        cp -r "$src" "$root/data/episodes/bench-$n"
        printf 'host_id = "bench"\n[paths]\ndata_root = "%s"\n[receiver]\nurl = "%s"\n[metrics]\ntextfile = "%s"\n' \
            "$root/data" "$url" "$root/cis490.prom" >"$root/c.toml"
        sync
        measure "$3" "$bin/ship-episode" --config "$root/c.toml"
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["archive_bytes"])' \
            "$root/data/shipped/bench-$n.json" >>"$work/size.ship"
        rm -rf "$root"
    }
    : >"$work/results"
    for r in $(seq "$runs"); do
        ship_once "$work/source/ep" "$r" ship-episode
        measure "tar|gzip-6|curl" bash -c "set -o pipefail; tar -cf - -C '$work/source' ep | gzip -6 \
            | tee >(wc -c >'$work/size.gzip.$r') | curl -sS --fail -T - '$url/_sink/base-$r'"
        measure "tar|curl" bash -c "set -o pipefail; tar -cf - -C '$work/source' ep \
            | curl -sS --fail -T - '$url/_sink/plain-$r'"
    done
    ship_once "$work/small/ep" small "ship-episode(quarter)"
    sleep 0.2

    local bytes=$((mib * 1048576))
    python3 - "$work" "$bytes" "$runs" <<'PY'
import sys, statistics, glob
work, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = {}
for line in open(f"{work}/results"):
    label, wall, user, sys_, rss = line.split()
    rows.setdefault(label, []).append((float(wall), float(user) + float(sys_), int(rss)))
ship_sizes = [int(l) for l in open(f"{work}/size.ship")]
gzip_sizes = [int(open(f).read()) for f in sorted(glob.glob(f"{work}/size.gzip.*"))]
med = lambda xs: statistics.median(xs)
print(f"\n{'variant':<26}{'wall s':>8}{'MiB/s':>9}{'CPU s':>8}{'peak RSS':>11}{'archive':>14}")
for label, vals in rows.items():
    wall = med([v[0] for v in vals]); cpu = med([v[1] for v in vals]); rss = max(v[2] for v in vals)
    arch = ""
    if label == "ship-episode": arch = f"{med(ship_sizes[:runs]):,.0f}"
    if label.startswith("tar|gzip"): arch = f"{med(gzip_sizes):,.0f}"
    rate = size / 1048576 / wall if "quarter" not in label else size / 4 / 1048576 / wall
    print(f"{label:<26}{wall:>8.2f}{rate:>9.1f}{cpu:>8.2f}{rss/1024:>8.1f} MiB{arch:>14}")
ship = med([v[0] for v in rows["ship-episode"]]); base = med([v[0] for v in rows["tar|gzip-6|curl"]])
print(f"\nship-episode vs tar|gzip -6|curl: {base / ship:.2f}x the speed, "
      f"{med(ship_sizes[:runs]) / med(gzip_sizes):.4f}x the archive size")
print("targets: >= 4x the speed, <= 1.01x the size, peak RSS <= 16 MiB whatever the episode size")
PY
}

bench_contention() {
    local mib=${BENCH_CONTEND_MIB:-32}
    cargo build --release --quiet --workspace --bins --example gen_episode --example busy
    local bin=${CARGO_TARGET_DIR:-target}/release
    make_work contend
    "$bin/examples/gen_episode" "$work/source/ep" "$mib" >/dev/null
    start_receiver "$bin"
    local url
    url=$(sed -n 's/^listening on //p' "$work/rcv.out")
    ship_wall() { # NICE NAME -> wall seconds of one ship-episode run
        local n=$2 root=$work/root-$2
        mkdir -p "$root/data/episodes"
        cp -r "$work/source/ep" "$root/data/episodes/c-$n"
        printf 'host_id = "bench"\n[paths]\ndata_root = "%s"\n[receiver]\nurl = "%s"\n[metrics]\ntextfile = "%s"\n' \
            "$root/data" "$url" "$root/cis490.prom" >"$root/c.toml"
        /usr/bin/time -f "%e" -o "$work/t" nice -n "$1" "$bin/ship-episode" --config "$root/c.toml" \
            >/dev/null 2>&1 || { echo "ship-episode failed ($2)" >&2; return 1; }
        rm -rf "$root"
        tail -n 1 "$work/t"
    }
    local idle19 idle0 busy19 busy0 stand_in
    idle19=$(ship_wall 19 idle19)
    idle0=$(ship_wall 0 idle0)
    "$bin/examples/busy" 3600 >/dev/null &
    stand_in=$!
    sleep 0.5
    busy0=$(ship_wall 0 busy0)
    busy19=$(ship_wall 19 busy19)
    kill "$stand_in" 2>/dev/null || true
    wait "$stand_in" 2>/dev/null || true
    echo "== contention: a ${mib} MiB episode, every core kept busy by examples/busy"
    awk -v a="$idle19" -v b="$busy19" -v c="$idle0" -v d="$busy0" 'BEGIN {
        printf "%-34s%10s%12s%10s\n", "ship-episode", "idle s", "contended s", "slowdown"
        printf "%-34s%10.2f%12.2f%9.1fx\n", "Nice=19 (as the units run it)", a, b, b / a
        printf "%-34s%10.2f%12.2f%9.1fx\n", "nice 0 (default priority)", c, d, d / c }'
    cleanup_ship
    work=""
}

# shape_dir SHAPE CACHE BIN: the cached episode "$CACHE/SHAPE/ep", generated
# on first use and again whenever a generator's source changes.
shape_dir() {
    local shape=$1 dir=$2/$1 bin=$3 stamp
    stamp=$(cat examples/gen_shape.rs examples/gen_episode.rs | md5sum | cut -c1-16)
    if [ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -d "$dir/ep" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        echo "== generating shape $shape in $dir"
        if [ "$shape" = mixed ]; then
            "$bin/examples/gen_episode" "$dir/ep" 512 >/dev/null
        else
            "$bin/examples/gen_shape" "$dir/ep" "$shape"
        fi
        echo "$stamp" >"$dir/stamp"
    fi
}

bench_matrix() {
    local shapes=("$@") runs=${BENCH_RUNS:-1} cores
    [ ${#shapes[@]} -gt 0 ] || shapes=(mixed frames json text random sparse)
    for s in "${shapes[@]}"; do
        case $s in
            mixed | frames | json | text | random | sparse) ;;
            *) echo "unknown shape $s (mixed|frames|json|text|random|sparse)" >&2; exit 64 ;;
        esac
    done
    cores=$(nproc)
    cargo build --release --quiet --workspace --bins --example gen_episode --example gen_shape
    local bin=${CARGO_TARGET_DIR:-target}/release
    make_work matrix
    local cache=${work%/*}/cis490-shapes
    start_receiver "$bin"
    local url
    url=$(sed -n 's/^listening on //p' "$work/rcv.out")
    echo "load before: $(uptime)"

    # row SHAPE VARIANT CMD...: appends "shape variant wall user sys rss_kb bytes"
    # to rows; the command prints the archive size on stdout.
    row() {
        local shape=$1 variant=$2
        shift 2
        /usr/bin/time -f "%e %U %S %M" -o "$work/time.out" "$@" >"$work/size.out" 2>"$work/cmd.err" || {
            echo "$shape $variant failed:" >&2; cat "$work/cmd.err" >&2; return 1; }
        echo "$shape $variant $(cat "$work/time.out") $(tail -n 1 "$work/size.out")" >>"$work/rows"
    }
    # ship SHAPE RUN: move the cached episode into a fresh data root, ship
    # it, and move it back (renames: no copy, nothing regenerated).
    ship() {
        local shape=$1 id=$1-$2 root=$work/root
        rm -rf "$root" "$work/store"
        mkdir -p "$root/data/episodes"
        mv "$cache/$shape/ep" "$root/data/episodes/$id"
        printf 'host_id = "bench"\n[paths]\ndata_root = "%s"\n[receiver]\nurl = "%s"\n[metrics]\ntextfile = "%s"\n' \
            "$root/data" "$url" "$root/cis490.prom" >"$root/c.toml"
        local ok=0
        /usr/bin/time -f "%e %U %S %M" -o "$work/time.out" "$bin/ship-episode" --config "$root/c.toml" \
            >/dev/null 2>"$work/cmd.err" || { echo "$shape ship-episode failed:" >&2; cat "$work/cmd.err" >&2; ok=1; }
        [ $ok -ne 0 ] || echo "$shape ship-episode $(cat "$work/time.out") $(python3 -c \
            'import json,sys; print(json.load(open(sys.argv[1]))["archive_bytes"])' \
            "$root/data/shipped/$id.json")" >>"$work/rows"
        local state
        for state in shipped outbox episodes quarantine; do
            [ ! -d "$root/data/$state/$id" ] || mv "$root/data/$state/$id" "$cache/$shape/ep"
        done
        rm -rf "$root" "$work/store"
        return $ok
    }
    : >"$work/rows"
    local shape r
    for shape in "${shapes[@]}"; do
        shape_dir "$shape" "$cache" "$bin"
        echo "== $shape: $(du -sh --apparent-size "$cache/$shape/ep" | cut -f1), load $(cut -d' ' -f1-3 /proc/loadavg)"
        for r in $(seq "$runs"); do
            ship "$shape" "$r"
            row "$shape" "tar|gzip-6|curl" bash -c "set -o pipefail; tar -cf - -C '$cache/$shape' ep \
                | gzip -6 | curl -sS --fail -T - -o /dev/null -w '%{size_upload}\n' '$url/_sink/g-$r'"
            row "$shape" "tar|pigz-6|curl" bash -c "set -o pipefail; tar -cf - -C '$cache/$shape' ep \
                | pigz -6 -p $cores | curl -sS --fail -T - -o /dev/null -w '%{size_upload}\n' '$url/_sink/p-$r'"
        done
    done
    echo "load after: $(uptime)"
    python3 - "$work/rows" "$cores" <<'PY'
import sys, statistics
rows, cores = {}, sys.argv[2]
for line in open(sys.argv[1]):
    shape, variant, wall, user, sys_, rss, size = line.split()
    r = rows.setdefault(shape, {}).setdefault(variant, [])
    r.append((float(wall), float(user) + float(sys_), int(rss), int(float(size))))
med = statistics.median
def stat(vals):
    return (med(v[0] for v in vals), med(v[1] for v in vals), max(v[2] for v in vals), med(v[3] for v in vals))
print(f"\nAll on this {cores}-core machine, one run each (median of BENCH_RUNS), same dev receiver.\n")
print("| shape | variant | wall s | CPU s | peak RSS | archive bytes | size vs gzip -6 |")
print("|---|---|---:|---:|---:|---:|---:|")
summary = []
for shape, variants in rows.items():
    st = {v: stat(vals) for v, vals in variants.items()}
    g = st.get("tar|gzip-6|curl")
    for v, (wall, cpu, rss, size) in st.items():
        rel = f"{size / g[3]:.4f}" if g else ""
        name = v.replace("|", "\\|")
        print(f"| {shape} | {name} | {wall:.2f} | {cpu:.2f} | {rss / 1024:.1f} MiB | {size:,} | {rel} |")
    s, p = st.get("ship-episode"), st.get("tar|pigz-6|curl")
    if s and p and g:
        summary.append((shape, s[0] / p[0], s[1] / p[1], s[3] / g[3], s[2] / 1024, g[0] / s[0]))
print("\n| shape | wall vs pigz (goal ≤ 0.67) | CPU vs pigz (≤ 1) | size vs gzip -6 (≤ 1.01) | peak RSS (≤ 16 MiB) | speed vs gzip -6 |")
print("|---|---:|---:|---:|---:|---:|")
missed = []
for shape, w, c, z, rss, sp in summary:
    marks = [w <= 0.67, c <= 1.0, z <= 1.01, rss <= 16, shape != "mixed" or sp >= 8]
    f = lambda ok: "" if ok else " ✗"
    print(f"| {shape} | {w:.2f}×{f(marks[0])} | {c:.2f}×{f(marks[1])} | {z:.4f}×{f(marks[2])} "
          f"| {rss:.1f} MiB{f(marks[3])} | {sp:.1f}×{f(marks[4])} |")
    if not all(marks):
        missed.append(shape)
print("\ngoals missed: " + (", ".join(missed) if missed else "none") + " (mixed also needs ≥ 8× gzip -6)")
PY
    cleanup_ship
    work=""
}

if [ "${parts[0]}" = matrix ]; then
    bench_matrix "${parts[@]:1}"
    exit 0
fi
for p in "${parts[@]}"; do
    case $p in
        ship) bench_ship ;;
        scan) scripts/bench-scan.sh ;;
        doctor) scripts/bench-doctor.sh ;;
        contention) bench_contention ;;
        *) echo "unknown part $p (ship|scan|doctor|contention|matrix)" >&2; exit 64 ;;
    esac
done
