//! The `config` row: does the config load, and is TLS checked.

use crate::doctor::{ConfigFacts, Facts, Row, Severity};

pub(super) fn config_row(f: &Facts, rows: &mut Vec<Row>) {
    match &f.config {
        ConfigFacts::Invalid { path, message } => rows.push(
            Row::new("config", Severity::Red, "the config cannot be used")
                .detail(format!(
                    "{message}. Nothing ships until this is fixed; backlog, quarantine and \
                     disk were not checked."
                ))
                .fix(format!(
                    "edit {} and fix the key named above, then check it and every file it \
                     names with `ship-episode --config {} --check-config && doctor`",
                    path.display(),
                    path.display()
                )),
        ),
        ConfigFacts::Loaded {
            path,
            verify_tls,
            warnings,
            ..
        } => {
            let detail = warnings.join("; ");
            if !verify_tls {
                rows.push(
                    Row::new(
                        "config",
                        Severity::Yellow,
                        "TLS certificate checks are off (receiver.verify_tls = false)",
                    )
                    .detail(detail)
                    .fix(format!(
                        "set receiver.verify_tls = true in {} (and receiver.ca_bundle if the \
                         receiver uses a private CA)",
                        path.display()
                    )),
                );
            } else {
                rows.push(
                    Row::new(
                        "config",
                        Severity::Green,
                        format!("config {} loads", path.display()),
                    )
                    .detail(detail),
                );
            }
        }
    }
}
