//! The human report. (`--json` is the serde form of [`Report`].)

use std::fmt::Write as _;

use super::{Report, Severity};

/// The human report; `color` adds ANSI colours to the severity labels.
pub fn render_text(r: &Report, color: bool) -> String {
    let paint = |sev: Severity, s: &str| -> String {
        if !color {
            return s.to_string();
        }
        let code = match sev {
            Severity::Red => "1;31",
            Severity::Yellow => "1;33",
            Severity::Green => "32",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    };
    let worst = r
        .rows
        .iter()
        .map(|x| x.severity)
        .max()
        .unwrap_or(Severity::Yellow);
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint(worst, &r.summary));
    for row in &r.rows {
        let label = format!("{:<6}", row.severity.as_str().to_uppercase());
        let _ = writeln!(out, "{} {}", paint(row.severity, &label), row.title);
        if !row.detail.is_empty() {
            let _ = writeln!(out, "       {}", row.detail);
        }
        if let Some(fix) = &row.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    out
}
