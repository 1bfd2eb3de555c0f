//! The `client_cert` row: is our mutual-TLS certificate usable, and for
//! how long. No row without `receiver.client_cert`.

use crate::client_cert::{CertProblem, WARN_BEFORE_EXPIRY};
use crate::doctor::{Facts, Row, Severity};
use crate::time::{human_span, utc_minutes};

const CHECK: &str = "client_cert";

pub(super) fn client_cert_row(f: &Facts, rows: &mut Vec<Row>) {
    let Some(c) = &f.client_cert else {
        return;
    };
    let info = match &c.inspected {
        Ok(info) => info,
        Err(problem) => {
            rows.push(red(c, problem));
            return;
        }
    };
    if let Some(problem) = info.problem_at(f.now) {
        rows.push(red(c, &problem));
        return;
    }
    let until = utc_minutes(info.not_after);
    let left = info.not_after - f.now;
    let cert = c.files.cert.display();
    if left <= WARN_BEFORE_EXPIRY {
        let expired = CertProblem::Expired {
            not_after: info.not_after,
        };
        rows.push(
            Row::new(
                CHECK,
                Severity::Yellow,
                format!(
                    "the client certificate expires in {} ({until})",
                    human_span(left)
                ),
            )
            .detail(format!(
                "receiver.client_cert {cert} ({}) is valid until {until}; after that the \
                 shippers refuse to upload anything (exit 78) until it is renewed.",
                info.subject
            ))
            .fix(format!("before {until}, {}", c.files.fix(&expired))),
        );
    } else {
        rows.push(
            Row::new(
                CHECK,
                Severity::Green,
                format!(
                    "client certificate valid until {until} (in {})",
                    human_span(left)
                ),
            )
            .detail(format!(
                "receiver.client_cert {cert} ({}); the key matches",
                info.subject
            )),
        );
    }
}

fn red(c: &crate::doctor::ClientCertFacts, problem: &CertProblem) -> Row {
    let title = match problem {
        CertProblem::Expired { not_after } => format!(
            "the client certificate expired on {}: nothing ships",
            utc_minutes(*not_after)
        ),
        CertProblem::NotYetValid { not_before, .. } => format!(
            "the client certificate is not valid before {}: nothing ships",
            utc_minutes(*not_before)
        ),
        CertProblem::KeyMismatch { .. } => {
            "the client key does not match the client certificate: nothing ships".to_string()
        }
        CertProblem::CertUnreadable(_) | CertProblem::KeyUnreadable(_) => {
            "the client certificate or key cannot be used: nothing ships".to_string()
        }
    };
    Row::new(CHECK, Severity::Red, title)
        .detail(format!(
            "{}. ship-episode and ship-scanner refuse to upload anything (exit 78); \
             ready episodes wait in episodes/ and outbox/.",
            c.files.describe(problem)
        ))
        .fix(c.files.fix(problem))
}
