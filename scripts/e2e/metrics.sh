# shellcheck shell=bash
# Fleet metrics end to end (sourced by scripts/e2e-systemd.sh): Debian's
# prometheus-node-exporter, started inside the container, serves the
# cis490.prom that the units wrote (through the link install.sh made in its
# textfile directory), and the values are the ones the journal and the data
# root show.

# The textfile directory of Debian's package (the [metrics] default).
TEXTFILE_DIR=/var/lib/prometheus/node-exporter

# The value of one series in a /metrics page (empty if absent).
metric_value() { # PAGE SERIES
    awk -v s="$2" '$1 == s { print $2; exit }' <<<"$1"
}

# A free loopback port: the host's own node_exporter may hold 9100 (nspawn
# shares the host's network).
free_port() {
    local p
    for p in $(seq 19100 19199); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    return 1
}

# What the data root holds now: ready episodes (with done.marker) and
# outbox entries.
disk_backlog() { # -> "READY OUTBOX"
    local ready=0 d
    for d in "$ROOT$EP"/*/; do
        [ -f "$d/done.marker" ] && ready=$((ready + 1))
    done
    echo "$ready $(find "$ROOT$DATA/outbox" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)"
}

# The page shows SHIPPED shipped episodes and the backlog on disk.
metrics_settled() { # PORT SHIPPED
    local page
    page=$(curl -fsS "http://127.0.0.1:$1/metrics") || return 1
    [ "$(metric_value "$page" 'cis490_episodes_total{outcome="shipped"}')" = "$2" ] &&
        [ "$(metric_value "$page" 'cis490_backlog_episodes{state="ready"}') $(metric_value "$page" 'cis490_backlog_episodes{state="outbox"}')" = "$(disk_backlog)" ]
}

do_metrics_node_exporter() {
    local port page shipped journal_shipped bytes journal_bytes ready outbox quarantined q_dirs
    local last t_ship mode
    [ -x "$ROOT/usr/bin/prometheus-node-exporter" ] ||
        fail "prometheus-node-exporter is not installed on the host (scripts/test.sh installs it)"
    # install.sh linked the file there to the one cis490 writes in its own
    # directory (the package's directory is not cis490's to write).
    [ "$(c readlink "$TEXTFILE_DIR/cis490.prom")" = /var/lib/cis490/metrics/cis490.prom ] ||
        fail "$TEXTFILE_DIR/cis490.prom: not the link install.sh makes: $(c ls -l "$TEXTFILE_DIR")"
    port=$(free_port) || fail "no free port in 19100-19199"
    c sh -c "echo 'ARGS=\"--web.listen-address=127.0.0.1:$port --collector.disable-defaults --collector.textfile\"' \
        > /etc/default/prometheus-node-exporter"
    c systemctl start prometheus-node-exporter.service
    wait_for "curl -fsS 'http://127.0.0.1:$port/metrics' >/dev/null 2>&1" 10 ||
        fail "node_exporter not answering on 127.0.0.1:$port"

    t_ship=$(date +%s)
    make_episode metrics-1 >/dev/null
    wait_for "[ -d '$ROOT$DATA/shipped/metrics-1' ]" 5 || fail "metrics-1 not shipped by the path unit"
    # The units count every attempt: the counter equals the journal's count
    # of OUTCOME=shipped over the whole run, and the bytes add up to its
    # BYTES. The scanner's next pass (every $SCAN_INTERVAL s) rewrites the
    # file too: wait for its gauges to match the data root.
    journal_shipped=$(c journalctl --no-pager -q -o cat -t ship-episode -t ship-scanner OUTCOME=shipped | wc -l)
    journal_bytes=$(c journalctl --no-pager -q -o json -t ship-episode -t ship-scanner OUTCOME=shipped |
        sed -n 's/.*"BYTES":"\([0-9]*\)".*/\1/p' | awk '{ s += $1 } END { printf "%d", s }')
    wait_for "metrics_settled $port $journal_shipped" $((SCAN_INTERVAL + 5)) || true
    page=$(curl -fsS "http://127.0.0.1:$port/metrics")
    c systemctl stop prometheus-node-exporter.service

    shipped=$(metric_value "$page" 'cis490_episodes_total{outcome="shipped"}')
    bytes=$(metric_value "$page" 'cis490_uploaded_bytes_total')
    ready=$(metric_value "$page" 'cis490_backlog_episodes{state="ready"}')
    outbox=$(metric_value "$page" 'cis490_backlog_episodes{state="outbox"}')
    quarantined=$(metric_value "$page" 'cis490_quarantine_episodes')
    last=$(metric_value "$page" 'cis490_last_success_timestamp_seconds')
    q_dirs=$(find "$ROOT$DATA/quarantine" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
    grep '^cis490_\|^node_textfile' <<<"$page" | grep -v '_bucket{' | sed 's/^/  /'
    [ "$(metric_value "$page" 'node_textfile_scrape_error')" = 0 ] || fail "node_exporter could not parse the file"
    [ "$(metric_value "$page" "cis490_build_info{version=\"$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)\"}")" = 1 ] ||
        fail "no cis490_build_info with this version"
    [ "$shipped" = "$journal_shipped" ] ||
        fail "shipped counter $shipped, journal has $journal_shipped OUTCOME=shipped"
    # Printed with %g by node_exporter above 1e6: compare as numbers.
    awk -v a="$bytes" -v b="$journal_bytes" 'BEGIN { exit !(a == b && b > 0) }' ||
        fail "uploaded bytes $bytes, journal BYTES add up to $journal_bytes"
    # Nothing pending after the earlier steps, unless one of them left an
    # episode behind (then the gauges must show it).
    [ "$ready $outbox" = "$(disk_backlog)" ] ||
        fail "backlog ready=$ready outbox=$outbox, the data root holds $(disk_backlog)"
    [ "$quarantined" = "$q_dirs" ] || fail "quarantine gauge $quarantined, quarantine/ holds $q_dirs"
    awk -v l="$last" -v t="$t_ship" 'BEGIN { exit !(l + 0 >= t) }' ||
        fail "last success $last is before metrics-1 was shipped ($t_ship)"
    mode=$(c stat -L -c '%a %U' "$TEXTFILE_DIR/cis490.prom")
    [ "$mode" = "644 cis490" ] || fail "cis490.prom is $mode, want 644 cis490"
    echo "node_exporter on 127.0.0.1:$port serves cis490.prom: shipped $shipped (= journal), $bytes bytes (= journal BYTES), backlog ready $ready / outbox $outbox (= data root), quarantine $quarantined (= quarantine/)"
}
