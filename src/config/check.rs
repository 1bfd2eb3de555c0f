//! `--check-config`: everything a binary would refuse at start, found
//! before the config is deployed (what `nginx -t` is to nginx).
//!
//! [`Config::load`] already rejects unknown keys, bad values and an
//! unreadable token file, one error at a time (it stops at the first). On
//! top of that, this reads every file the config names the way the shipper
//! will, and reports every problem it finds, not just the first:
//!
//! - `receiver.ca_bundle`: readable, PEM, every certificate X.509;
//! - `receiver.client_cert` + `client_key`: both parse, the key belongs to
//!   the certificate, and the certificate is valid now;
//! - `receiver.bearer_token_file`: readable, one non-empty line (by
//!   [`Config::load`]);
//! - the systemd credentials (`bearer-token`, `client-key`), which replace
//!   the token and key under systemd: the ones in `$CREDENTIALS_DIRECTORY`
//!   when run inside a unit, else their sources in
//!   `/etc/cis490/credentials/`, which is what the units will be given.
//!
//! A new file-naming key gets a function in [`FILE_CHECKS`] (the helpers
//! [`read_named`] and [`check_secret_file`] do the reading and wording).

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_cert::Certificate;
use x509_cert::der::Decode;

use super::Config;
use crate::client_cert::{self, IdentityFiles};

/// Where the units' `LoadCredential=` lines read the credentials from.
pub const CREDENTIAL_SOURCES: &str = "/etc/cis490/credentials";

/// One thing that would stop a binary, as one line naming the config file,
/// the key and (where there is one) the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config file checked.
    pub config: PathBuf,
    /// The key at fault, e.g. `receiver.ca_bundle`; empty for the file
    /// itself (unreadable, not TOML).
    pub key: String,
    /// What is wrong; never a secret's bytes.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key (the file itself), or messages that already start with
        // it (the client certificate's): do not say it twice.
        if self.key.is_empty() || self.message.starts_with(&format!("{} ", self.key)) {
            write!(f, "{}: {}", self.config.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.config.display(),
                self.key,
                self.message
            )
        }
    }
}

/// What the check found: problems make it fail, warnings do not.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where the check looks besides the config file itself.
#[derive(Debug, Clone)]
pub struct CheckEnv {
    /// `$CREDENTIALS_DIRECTORY`: set when run inside a unit.
    pub credentials_dir: Option<PathBuf>,
    /// The credentials' sources, checked when `credentials_dir` is unset.
    pub credential_sources: PathBuf,
    /// Unix seconds, for the client certificate's dates.
    pub now: u64,
}

impl CheckEnv {
    /// The environment of this process.
    pub fn from_process() -> CheckEnv {
        CheckEnv {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            credential_sources: PathBuf::from(CREDENTIAL_SOURCES),
            now: crate::layout::unix_now(),
        }
    }
}

type FileCheck = fn(&Config, &CheckEnv, &mut CheckReport);

/// Every check of a file the config names, in the order they are reported.
const FILE_CHECKS: &[FileCheck] = &[check_ca_bundle, check_client_identity, check_data_root];

/// Load the config at `path` and check everything it names.
pub fn check_config(path: &Path, env: &CheckEnv) -> CheckReport {
    let mut report = CheckReport::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.problems.push(Problem {
                config: path.to_path_buf(),
                key: String::new(),
                message: format!("cannot read config: {e}"),
            });
            return report;
        }
    };
    let credentials = match &env.credentials_dir {
        Some(dir) => Some(dir.clone()),
        None => credential_sources(&env.credential_sources, &mut report),
    };
    let config = match Config::parse(&text, path, credentials.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Already "{file}: {key}: {message}": keep its wording.
            let (key, message) = match e {
                super::ConfigError::Key { key, message, .. } => (key, message),
                super::ConfigError::Syntax { message, .. } => {
                    (String::new(), format!("not valid TOML: {message}"))
                }
                super::ConfigError::Read { source, .. } => {
                    (String::new(), format!("cannot read config: {source}"))
                }
            };
            report.problems.push(Problem {
                config: path.to_path_buf(),
                key,
                message,
            });
            return report;
        }
    };
    report.warnings.extend(config.warnings.iter().cloned());
    let env = CheckEnv {
        credentials_dir: credentials,
        ..env.clone()
    };
    for check in FILE_CHECKS {
        check(&config, &env, &mut report);
    }
    report
}

/// Outside a unit, the credentials the units will be given: their sources
/// in /etc/cis490/credentials/, when there. They take the place of the
/// config's token and key as they will under systemd.
fn credential_sources(dir: &Path, report: &mut CheckReport) -> Option<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(_) => Some(dir.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            report.warnings.push(format!(
                "cannot look into {} ({e}): the systemd credentials there were not checked \
                 (run as root to check them)",
                dir.display()
            ));
            None
        }
    }
}

fn problem(config: &Config, key: &str, message: impl Into<String>) -> Problem {
    Problem {
        config: config.source.clone(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// Read a file named by `key`, or report why it cannot be read.
pub fn read_named(
    config: &Config,
    key: &str,
    path: &Path,
    report: &mut CheckReport,
) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            report.problems.push(problem(
                config,
                key,
                format!("cannot read {}: {e}", path.display()),
            ));
            None
        }
    }
}

/// A secret file (token, access key): readable, one non-empty line. The
/// content is never quoted.
pub fn check_secret_file(config: &Config, key: &str, path: &Path, report: &mut CheckReport) {
    let Some(bytes) = read_named(config, key, path, report) else {
        return;
    };
    let why = match std::str::from_utf8(&bytes).map(str::trim) {
        Err(_) => Some("is not UTF-8 text"),
        Ok("") => Some("is empty"),
        Ok(t) if t.contains(['\r', '\n']) => Some("must hold a single line"),
        Ok(_) => None,
    };
    if let Some(why) = why {
        report
            .problems
            .push(problem(config, key, format!("{} {why}", path.display())));
    }
}

/// `receiver.ca_bundle`: the certificates the receiver's is checked against.
fn check_ca_bundle(config: &Config, _env: &CheckEnv, report: &mut CheckReport) {
    const KEY: &str = "receiver.ca_bundle";
    let Some(path) = &config.receiver.ca_bundle else {
        return;
    };
    let Some(pem) = read_named(config, KEY, path, report) else {
        return;
    };
    let mut count = 0;
    for (i, item) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let message = match item {
            Err(e) => format!("{}: certificate {}: bad PEM: {e}", path.display(), i + 1),
            Ok(der) => match Certificate::from_der(&der) {
                Ok(_) => {
                    count += 1;
                    continue;
                }
                Err(e) => format!(
                    "{}: certificate {} is not an X.509 certificate: {e}",
                    path.display(),
                    i + 1
                ),
            },
        };
        report.problems.push(problem(config, KEY, message));
        return;
    }
    if count == 0 {
        report.problems.push(problem(
            config,
            KEY,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
}

/// `receiver.client_cert` and its key (the `client-key` credential inside
/// a unit): both parse, belong together, and are valid now.
fn check_client_identity(config: &Config, env: &CheckEnv, report: &mut CheckReport) {
    let (Some(cert), Some(key)) = (&config.receiver.client_cert, &config.receiver.client_key)
    else {
        return;
    };
    let files = IdentityFiles::with_credentials_dir(cert, key, env.credentials_dir.as_deref());
    let key_name = if files.key_is_credential {
        "receiver.client_key (credential)"
    } else {
        "receiver.client_key"
    };
    let cert_pem = read_named(config, "receiver.client_cert", cert, report);
    let key_pem = read_named(config, key_name, key, report);
    let (Some(cert_pem), Some(key_pem)) = (cert_pem, key_pem) else {
        return;
    };
    identity_problem(config, &files, &cert_pem, &key_pem, env.now, report);
}

fn identity_problem(
    config: &Config,
    files: &IdentityFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: u64,
    report: &mut CheckReport,
) {
    if let Err(p) = client_cert::check(cert_pem, key_pem, now) {
        let key = match p {
            client_cert::CertProblem::KeyUnreadable(_)
            | client_cert::CertProblem::KeyMismatch { .. } => "receiver.client_key",
            _ => "receiver.client_cert",
        };
        report
            .problems
            .push(problem(config, key, files.describe(&p)));
    }
}

/// `paths.data_root`: created by the package (or the first run) when
/// missing, but never usable when something else has its name.
fn check_data_root(config: &Config, _env: &CheckEnv, report: &mut CheckReport) {
    let root = &config.data_root;
    if let Ok(meta) = std::fs::metadata(root)
        && !meta.is_dir()
    {
        report.problems.push(problem(
            config,
            "paths.data_root",
            format!("{} exists but is not a directory", root.display()),
        ));
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
