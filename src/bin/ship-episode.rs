//! `ship-episode`: ship ready episodes now (run by the .path unit), or the
//! named ones, or requeue a quarantined one.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use cis490::args::ShipEpisodeArgs;
use cis490::layout::EpisodeId;
use cis490::outcome::OutcomeKind;
use cis490::ship::{Observer, RunReport, Shipper};
use cis490::transport::Progress;
use clap::Parser;

/// Progress on a terminal, for episodes big enough to wait for.
struct TerminalProgress {
    enabled: bool,
    last_draw: Option<Instant>,
    phase_started: Instant,
}

const PROGRESS_MIN_BYTES: u64 = 8 << 20;

impl TerminalProgress {
    fn draw(&mut self, line: String) {
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t).as_millis() < 250)
        {
            return;
        }
        self.last_draw = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn rate(&self, bytes: u64) -> f64 {
        bytes as f64 / 1_048_576.0 / self.phase_started.elapsed().as_secs_f64().max(0.001)
    }

    fn clear(&mut self) {
        if self.last_draw.take().is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Observer for TerminalProgress {
    fn archiving(&mut self, id: &EpisodeId, input_bytes: u64) {
        if !self.enabled || input_bytes < PROGRESS_MIN_BYTES {
            if input_bytes == 0 {
                self.phase_started = Instant::now();
            }
            return;
        }
        let line = format!(
            "{id}: packing {:.1} MiB ({:.1} MiB/s)",
            input_bytes as f64 / 1_048_576.0,
            self.rate(input_bytes)
        );
        self.draw(line);
    }

    fn uploading(&mut self, id: &EpisodeId, p: Progress) {
        if p.sent == 0 || self.last_draw.is_none() && p.sent == p.total {
            self.phase_started = Instant::now();
        }
        if !self.enabled || p.total < PROGRESS_MIN_BYTES {
            return;
        }
        let line = format!(
            "{id}: uploading {:.1} / {:.1} MiB ({:.1} MiB/s)",
            p.sent as f64 / 1_048_576.0,
            p.total as f64 / 1_048_576.0,
            self.rate(p.sent)
        );
        self.draw(line);
    }
}

fn print_summary(report: &RunReport) {
    if report.episodes.is_empty() && report.host_error.is_none() && report.not_found.is_empty() {
        println!("nothing to ship");
        return;
    }
    for e in &report.episodes {
        let size = e
            .archive_bytes
            .map(|b| format!(", {:.1} MiB", b as f64 / 1_048_576.0))
            .unwrap_or_default();
        println!(
            "{:<11} {}  → {}/  ({}{size}, {:.1}s)",
            e.outcome.as_str(),
            e.id,
            e.state,
            e.detail,
            e.duration.as_secs_f64()
        );
    }
    for t in &report.not_found {
        println!("{:<11} {t}  (no such episode)", "missing");
    }
    if let Some(h) = &report.host_error {
        println!(
            "\nstopped: the receiver refused this host ({}).\nfix: {}",
            h.reason, h.fix
        );
    }
    let n = |k| report.count(k);
    println!(
        "\n{} shipped, {} duplicate, {} quarantined, {} left for retry, {} skipped",
        n(OutcomeKind::Shipped),
        n(OutcomeKind::Duplicate),
        n(OutcomeKind::Quarantined),
        n(OutcomeKind::Retry),
        n(OutcomeKind::Skipped)
    );
}

fn main() -> ExitCode {
    cis490::failpoint::setup();
    let args = ShipEpisodeArgs::parse();
    if args.common.check_config {
        return cis490::cli::check_config(args.common.config.as_deref());
    }
    cis490::logging::init("ship-episode");
    let config = match cis490::cli::load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shipper = match Shipper::new(&config) {
        Ok(s) => s,
        Err(e) => {
            cis490::cli::fail(&e.to_string());
            return ExitCode::from(e.exit_code());
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let mut progress = TerminalProgress {
        enabled: std::io::stderr().is_terminal(),
        last_draw: None,
        phase_started: Instant::now(),
    };

    let report = if let Some(target) = &args.requeue {
        let result = shipper
            .resolve_target(target)
            .and_then(|id| shipper.requeue(&id, &mut progress));
        match result {
            Ok(r) => {
                let mut report = RunReport::default();
                report.push(r);
                report
            }
            Err(e) => {
                cis490::cli::fail(&e.to_string());
                return ExitCode::from(e.exit_code());
            }
        }
    } else if args.episodes.is_empty() {
        match shipper.ship_ready(&mut progress) {
            Ok(r) => r,
            Err(e) => {
                cis490::cli::fail(&e.to_string());
                return ExitCode::from(e.exit_code());
            }
        }
    } else {
        let mut ids = Vec::new();
        let mut not_found = Vec::new();
        for t in &args.episodes {
            match shipper.resolve_target(t) {
                Ok(id) if shipper.layout().locate(&id).is_some() => ids.push(id),
                Ok(_) => not_found.push(t.clone()),
                Err(e) => {
                    cis490::cli::fail(&e.to_string());
                    return ExitCode::from(cis490::exit::USAGE);
                }
            }
        }
        let mut r = shipper.ship_ids(ids, &mut progress);
        r.not_found = not_found;
        r
    };
    progress.clear();
    cis490::metrics::Metrics::new(&config).after_run(&report);
    // The journal already has one line per episode; elsewhere, summarise.
    if terminal || !cis490::logging::stderr_is_journal() {
        print_summary(&report);
    }
    ExitCode::from(report.exit_code())
}
