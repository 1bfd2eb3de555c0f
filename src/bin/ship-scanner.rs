//! `ship-scanner`: the long-running sweep (cis490-ship-scanner.service,
//! Type=notify, WatchdogSec=).

use std::io::IsTerminal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cis490::args::ShipScannerArgs;
use cis490::exit;
use cis490::metrics::Metrics;
use cis490::scan::{Heartbeat, PassReport, Scanner};
use cis490::ship::ShipError;
use cis490::signals;
use clap::Parser;

/// After SIGTERM, how long work that cannot be aborted (packing a large
/// episode) may go on before the process exits anyway. Every state change is
/// one rename, so exiting at any instant leaves each episode in one state; a
/// partial archive is rebuilt at the next start.
const STOP_GRACE: Duration = Duration::from_millis(3500);
/// After the grace, how long a settle or retry-file write in flight may take
/// to finish before the exit (STOP_GRACE + this stays under 5 s).
const STATE_WRITE_GRACE: Duration = Duration::from_millis(1200);
/// Sleep granularity between passes: how fast a stop request is seen.
const SLICE: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    cis490::failpoint::setup();
    let args = ShipScannerArgs::parse();
    if args.common.check_config {
        return cis490::cli::check_config(args.common.config.as_deref());
    }
    cis490::logging::init("ship-scanner");
    if let Err(e) = signals::install_stop_handler() {
        cis490::cli::fail(&format!("cannot install the SIGTERM handler: {e}"));
        return ExitCode::from(exit::SOFTWARE);
    }
    let config = match cis490::cli::load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut scanner = match Scanner::new(&config, &signals::STOP) {
        Ok(s) => s,
        Err(e) => return fail_setup(&e),
    };
    let mut heartbeat = Heartbeat::from_env();
    if let Some(period) = heartbeat.watchdog()
        && config.shipper.request_timeout >= period
    {
        // The transport's stall timeout should end a stalled upload (a
        // transient failure, retried) before the watchdog kills us for it.
        tracing::warn!(
            "shipper.request_timeout_s ({:.0}s) is not below the watchdog period ({:.0}s): \
             a stalled upload will get the scanner killed and restarted instead of being \
             retried; lower request_timeout_s or raise WatchdogSec=",
            config.shipper.request_timeout.as_secs_f64(),
            period.as_secs_f64()
        );
    }
    let mut metrics = Metrics::new(&config).long_running();
    if args.once {
        return once(&mut scanner, &mut heartbeat, &mut metrics);
    }
    if let Some(n) = args.bench_passes {
        return bench(&mut scanner, &mut heartbeat, n);
    }
    run(
        &mut scanner,
        &mut heartbeat,
        &mut metrics,
        config.shipper.scan_interval,
    )
}

fn fail_setup(e: &ShipError) -> ExitCode {
    cis490::cli::fail(&e.to_string());
    ExitCode::from(e.exit_code())
}

/// A pass that cannot take the loop down with it: errors and panics are
/// logged and the caller carries on.
fn guarded_pass(scanner: &mut Scanner, heartbeat: &mut Heartbeat) -> Result<PassReport, u8> {
    match catch_unwind(AssertUnwindSafe(|| scanner.pass(heartbeat))) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => {
            tracing::error!("scan pass failed: {e}");
            Err(e.exit_code())
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("scan pass panicked (a bug): {what}");
            Err(exit::SOFTWARE)
        }
    }
}

fn run(
    scanner: &mut Scanner,
    heartbeat: &mut Heartbeat,
    metrics: &mut Metrics,
    interval: Duration,
) -> ExitCode {
    scanner.pace_as_daemon();
    // The queue first: READY=1 means "the backlog is known".
    if let Err(e) = scanner.refresh() {
        cis490::cli::fail(&format!("cannot build the queue: {e}"));
        return ExitCode::from(exit::IO_ERROR);
    }
    let status = scanner.status();
    heartbeat.ready(&status);
    match heartbeat.watchdog() {
        Some(w) => tracing::info!(
            "started: {status} (scan every {:.1}s, watchdog {:.0}s)",
            interval.as_secs_f64(),
            w.as_secs_f64()
        ),
        None => tracing::info!(
            "started: {status} (scan every {:.1}s)",
            interval.as_secs_f64()
        ),
    }
    spawn_stop_backstop();

    let mut last_status = status;
    while !signals::stop_requested() {
        let started = Instant::now();
        let pass = guarded_pass(scanner, heartbeat);
        let failed = pass.is_err();
        match &pass {
            Ok(report) => metrics.after_run(&report.run),
            Err(_) => metrics.refresh(),
        }
        match pass {
            Ok(report) if !report.run.episodes.is_empty() => tracing::debug!(
                "pass: {} episode(s) handled in {:.0} ms",
                report.run.episodes.len(),
                started.elapsed().as_secs_f64() * 1000.0
            ),
            // This host cannot ship (its client certificate expired): exit
            // as a start would, and let Restart= read the renewed files.
            Err(exit::CONFIG) => {
                heartbeat.stopping();
                return ExitCode::from(exit::CONFIG);
            }
            _ => {}
        }
        heartbeat.beat();
        let status = scanner.status();
        heartbeat.status(&status);
        if status != last_status && std::io::stderr().is_terminal() {
            tracing::info!("{status}");
        }
        last_status = status;
        // After a failed pass, the interval: not a retry every second.
        let wake = if failed {
            interval
        } else {
            scanner.next_wake_in(interval)
        };
        sleep(wake, heartbeat);
    }
    heartbeat.stopping();
    tracing::info!("stopped on request");
    ExitCode::SUCCESS
}

/// Sleep in short slices so a stop request is seen at once, feeding the
/// watchdog if the interval is longer than half its period.
fn sleep(interval: Duration, heartbeat: &mut Heartbeat) {
    let until = Instant::now() + interval;
    loop {
        if signals::stop_requested() {
            return;
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        heartbeat.keep_alive();
        std::thread::sleep(SLICE.min(until - now));
    }
}

/// Uploads abort within a tick, but packing cannot be interrupted: exit
/// anyway once the grace period is over, between two state writes.
fn spawn_stop_backstop() {
    std::thread::spawn(|| {
        while !signals::stop_requested() {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(STOP_GRACE);
        tracing::warn!(
            "still busy {:.1}s after the stop request: exiting now; the episode stays in the \
             outbox and its archive is rebuilt at the next start",
            STOP_GRACE.as_secs_f64()
        );
        signals::exit_between_state_writes(0, STATE_WRITE_GRACE);
    });
}

fn once(scanner: &mut Scanner, heartbeat: &mut Heartbeat, metrics: &mut Metrics) -> ExitCode {
    let report = match guarded_pass(scanner, heartbeat) {
        Ok(r) => r,
        Err(code) => {
            metrics.refresh();
            return ExitCode::from(code);
        }
    };
    metrics.after_run(&report.run);
    if std::io::stdout().is_terminal() || !cis490::logging::stderr_is_journal() {
        for e in &report.run.episodes {
            println!(
                "{:<11} {}  → {}/  ({})",
                e.outcome.as_str(),
                e.id,
                e.state,
                e.detail
            );
        }
        if let Some(h) = &report.run.host_error {
            println!(
                "stopped: the receiver refused this host ({}).\nfix: {}",
                h.reason, h.fix
            );
        }
        println!("{}", scanner.status());
    }
    ExitCode::from(report.run.exit_code())
}

/// Per-pass wall time, for scripts/bench-scan.sh. The first pass reads the
/// retry files; later ones use the cached due times.
fn bench(scanner: &mut Scanner, heartbeat: &mut Heartbeat, n: u32) -> ExitCode {
    let started = Instant::now();
    if let Err(e) = scanner.refresh() {
        cis490::cli::fail(&format!("cannot build the queue: {e}"));
        return ExitCode::from(exit::IO_ERROR);
    }
    let build = started.elapsed();
    let mut times = Vec::new();
    for _ in 0..n.max(1) {
        let t = Instant::now();
        if let Err(code) = guarded_pass(scanner, heartbeat) {
            return ExitCode::from(code);
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let first = times[0];
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!(
        "queue_build_ms={:.3} passes={} first_ms={first:.3} median_ms={:.3} p95_ms={:.3} \
         max_ms={:.3} status={:?}",
        build.as_secs_f64() * 1000.0,
        times.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0),
        scanner.status()
    );
    ExitCode::SUCCESS
}
