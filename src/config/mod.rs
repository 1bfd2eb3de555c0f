//! The lab-host config file (`/etc/cis490/lab-host.toml`).
//!
//! Schema, keys and defaults follow the original Python shipper. Parsing is
//! strict on purpose: an unknown key, a wrong type or an out-of-range value is
//! an error naming the key and the file, because a typo in a retention key
//! must never fall back silently to a default (and delete data early).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

pub mod check;
mod metrics;
mod shipper;
pub use metrics::{DEFAULT_TEXTFILE, MetricsSettings};
pub use shipper::ShipperSettings;
pub mod s3;
pub use s3::{S3_SECRET_CREDENTIAL, S3Receiver};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/cis490/lab-host.toml";
/// Environment variable that overrides the default config path.
pub const CONFIG_ENV: &str = "CIS490_CONFIG";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/cis490/data";
/// systemd credential names read from `$CREDENTIALS_DIRECTORY` (LoadCredential=).
pub const BEARER_TOKEN_CREDENTIAL: &str = "bearer-token";
pub const CLIENT_KEY_CREDENTIAL: &str = "client-key";

/// The seed's backoff schedule for transient failures, capped at the last entry.
pub const BACKOFF_SECONDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 120.0, 300.0];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not valid TOML: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: {key}: {message}")]
    Key {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the bearer token came from: useful in diagnostics, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    ConfigFile,
    TokenFile(PathBuf),
    Credential(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Base URL without trailing slash, e.g. `https://collector.wg`.
    pub url: String,
    pub ca_bundle: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_source: Option<TokenSource>,
    pub verify_tls: bool,
    /// Set for an `s3://` url: the object store to ship into.
    pub s3: Option<Box<S3Receiver>>,
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Days to keep `shipped/` entries; 0 disables pruning.
    pub keep_local_for_days: u32,
    /// Days to keep `quarantine/` entries; 0 disables pruning.
    pub quarantine_keep_days: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from (for messages).
    pub source: PathBuf,
    pub host_id: String,
    pub data_root: PathBuf,
    pub receiver: ReceiverConfig,
    pub shipper: ShipperSettings,
    pub retention: RetentionSettings,
    pub metrics: MetricsSettings,
    /// Non-fatal remarks found while loading (deprecated keys, insecure TLS).
    pub warnings: Vec<String>,
}

/// The config path to use: `--config`, else `$CIS490_CONFIG`, else the default.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

impl Config {
    /// Load and validate the config at `path`, reading credentials from
    /// `$CREDENTIALS_DIRECTORY` when systemd provides one.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Config::parse(&text, path, creds.as_deref())
    }

    /// Parse config text. `file` is only used for messages and relative paths.
    pub fn parse(
        text: &str,
        file: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                file: file.to_path_buf(),
                message: one_line(&e.to_string()),
            })?;
        let mut p = Parser {
            file,
            warnings: Vec::new(),
        };
        let mut root = Section::new("", table);

        let host_id = p.required_str(&mut root, "host_id")?;
        validate_host_id(&host_id).map_err(|m| p.key_error("host_id", m))?;

        let mut paths = p.section(&mut root, "paths")?;
        let data_root = p
            .optional_path(&mut paths, "data_root")?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT));
        let data_root = std::path::absolute(&data_root)
            .map_err(|e| p.key_error("paths.data_root", e.to_string()))?;
        p.finish(paths)?;

        let receiver = p.receiver(&mut root, credentials_dir)?;

        let shipper = p.shipper(&mut root, file)?;

        let mut retention = p.section(&mut root, "retention")?;
        let keep_local_for_days = p.integer(&mut retention, "keep_local_for_days", 7, 0, 36_500)?;
        let quarantine_keep_days =
            p.integer(&mut retention, "quarantine_keep_days", 30, 0, 36_500)?;
        if retention
            .table
            .contains_key("quarantine_cleanup_interval_s")
        {
            // Still type-checked so a garbled value is not ignored silently.
            p.seconds(
                &mut retention,
                "quarantine_cleanup_interval_s",
                3600.0,
                0.0,
                f64::MAX,
            )?;
            p.warnings.push(format!(
                "{}: retention.quarantine_cleanup_interval_s is ignored: the prune interval now \
                 lives in cis490-quarantine-prune.timer (OnUnitActiveSec=)",
                file.display()
            ));
        }
        p.finish(retention)?;
        let metrics = p.metrics(&mut root)?;
        p.finish(root)?;

        if !receiver.verify_tls {
            p.warnings.push(format!(
                "{}: receiver.verify_tls = false: the receiver's certificate is NOT checked; \
                 anyone on the path can read and alter uploads",
                file.display()
            ));
        }

        Ok(Config {
            source: file.to_path_buf(),
            host_id,
            data_root,
            receiver,
            shipper,
            retention: RetentionSettings {
                keep_local_for_days: keep_local_for_days as u32,
                quarantine_keep_days: quarantine_keep_days as u32,
            },
            metrics,
            warnings: p.warnings,
        })
    }
}

/// Host ids become a URL path segment and a journal field: keep them boring.
fn validate_host_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if id.starts_with('.') {
        return Err("must not start with '.'".into());
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{id:?} may only contain ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TOML table plus its dotted prefix, from which keys are taken one by
/// one so that whatever is left over is, by definition, unknown.
struct Section {
    prefix: String,
    table: Table,
}

impl Section {
    fn new(prefix: &str, table: Table) -> Section {
        Section {
            prefix: prefix.to_string(),
            table,
        }
    }
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }
}

struct Parser<'a> {
    file: &'a Path,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn key_error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Key {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn type_error(&self, s: &Section, name: &str, expected: &str, got: &Value) -> ConfigError {
        self.key_error(
            &s.key(name),
            format!("expected {expected}, found {}", got.type_str()),
        )
    }

    fn section(&self, parent: &mut Section, name: &str) -> Result<Section, ConfigError> {
        match parent.table.remove(name) {
            None => Ok(Section::new(&parent.key(name), Table::new())),
            Some(Value::Table(t)) => Ok(Section::new(&parent.key(name), t)),
            Some(other) => Err(self.type_error(parent, name, "a table", &other)),
        }
    }

    /// Reject whatever keys nobody took: typos must not pass silently.
    fn finish(&self, s: Section) -> Result<(), ConfigError> {
        match s.table.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.key_error(&s.key(k), "unknown key")),
        }
    }

    fn optional_str(&self, s: &mut Section, name: &str) -> Result<Option<String>, ConfigError> {
        match s.table.remove(name) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v)),
            Some(other) => Err(self.type_error(s, name, "a string", &other)),
        }
    }

    fn required_str(&self, s: &mut Section, name: &str) -> Result<String, ConfigError> {
        match self.optional_str(s, name)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(self.key_error(&s.key(name), "must not be empty")),
            None => Err(self.key_error(&s.key(name), "required but missing")),
        }
    }

    /// Paths: empty string means unset (seed semantics); `~` is expanded.
    fn optional_path(&self, s: &mut Section, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(v) = self.optional_str(s, name)? else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(None);
        }
        if let Some(rest) = v.strip_prefix("~/") {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                self.key_error(&s.key(name), "uses ~ but HOME is not set".to_string())
            })?;
            return Ok(Some(PathBuf::from(home).join(rest)));
        }
        Ok(Some(PathBuf::from(v)))
    }

    fn bool(&self, s: &mut Section, name: &str, default: bool) -> Result<bool, ConfigError> {
        match s.table.remove(name) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(b),
            Some(other) => Err(self.type_error(s, name, "true or false", &other)),
        }
    }

    fn integer(
        &self,
        s: &mut Section,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let v = match s.table.remove(name) {
            None => return Ok(default),
            Some(Value::Integer(i)) => i,
            Some(other) => return Err(self.type_error(s, name, "an integer", &other)),
        };
        if v < min || v > max {
            return Err(self.key_error(
                &s.key(name),
                format!("{v} is out of range ({min} to {max})"),
            ));
        }
        Ok(v)
    }

    fn float(
        &self,
        s: &mut Section,
        name: &str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        self.number(s, name, (default, min, max), "a number", "")
    }

    fn seconds(
        &self,
        s: &mut Section,
        name: &str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<Duration, ConfigError> {
        let v = self.number(
            s,
            name,
            (default, min, max),
            "a number of seconds",
            " seconds",
        )?;
        Ok(Duration::from_secs_f64(v))
    }

    /// A finite number within `(default, min, max)`; `expected` names the
    /// type in errors, `unit` follows the range.
    fn number(
        &self,
        s: &mut Section,
        name: &str,
        (default, min, max): (f64, f64, f64),
        expected: &str,
        unit: &str,
    ) -> Result<f64, ConfigError> {
        let v = match s.table.remove(name) {
            None => default,
            Some(Value::Integer(i)) => i as f64,
            Some(Value::Float(f)) => f,
            Some(other) => return Err(self.type_error(s, name, expected, &other)),
        };
        if !v.is_finite() || v < min || v > max {
            return Err(self.key_error(
                &s.key(name),
                format!("{v} is out of range ({min} to {max}{unit})"),
            ));
        }
        Ok(v)
    }

    fn receiver(
        &mut self,
        root: &mut Section,
        credentials_dir: Option<&Path>,
    ) -> Result<ReceiverConfig, ConfigError> {
        let mut rcv = self.section(root, "receiver")?;
        let url = self.required_str(&mut rcv, "url")?;
        let url = url.trim_end_matches('/').to_string();
        if url.starts_with("s3://") {
            return self.s3_receiver(rcv, url, credentials_dir);
        }
        // A URL gets printed (errors, doctor, the journal): no secret in it.
        let shown = redact_userinfo(&url);
        match reqwest::Url::parse(&url) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                return Err(self.key_error(
                    "receiver.url",
                    format!(
                        "{shown:?} must not carry user information (user:password@): put the \
                         secret in receiver.bearer_token_file or the {BEARER_TOKEN_CREDENTIAL} \
                         credential"
                    ),
                ));
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    return Err(self.key_error("receiver.url", "must not have a query or fragment"));
                }
                if u.scheme() == "http" {
                    self.warnings.push(format!(
                        "{}: receiver.url uses plain http: uploads are not encrypted",
                        self.file.display()
                    ));
                }
            }
            Ok(_) => {
                return Err(self.key_error(
                    "receiver.url",
                    format!("{shown:?} must be an http:// or https:// URL with a host"),
                ));
            }
            Err(e) => {
                return Err(self.key_error("receiver.url", format!("{shown:?} is not a URL: {e}")));
            }
        }
        let ca_bundle = self.optional_path(&mut rcv, "ca_bundle")?;
        let client_cert = self.optional_path(&mut rcv, "client_cert")?;
        let mut client_key = self.optional_path(&mut rcv, "client_key")?;
        let inline_token = self.optional_str(&mut rcv, "bearer_token")?;
        let token_file = self.optional_path(&mut rcv, "bearer_token_file")?;
        let verify_tls = self.bool(&mut rcv, "verify_tls", true)?;
        self.finish(rcv)?;

        if inline_token.as_deref().is_some_and(|t| !t.is_empty()) && token_file.is_some() {
            return Err(self.key_error(
                "receiver.bearer_token_file",
                "set either bearer_token or bearer_token_file, not both",
            ));
        }

        // A systemd credential wins: it is how the units deliver secrets.
        let credential = |name: &str| {
            credentials_dir
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
        };
        let (bearer_token, bearer_token_source) = if let Some(cred) =
            credential(BEARER_TOKEN_CREDENTIAL)
        {
            let t = read_token(&cred)
                .map_err(|m| self.key_error("receiver.bearer_token (credential)", m))?;
            (Some(t), Some(TokenSource::Credential(cred)))
        } else if let Some(f) = token_file {
            let t = read_token(&f).map_err(|m| self.key_error("receiver.bearer_token_file", m))?;
            (Some(t), Some(TokenSource::TokenFile(f)))
        } else {
            match inline_token {
                Some(t) if !t.is_empty() => {
                    if t.trim() != t || t.contains(['\r', '\n']) {
                        return Err(self.key_error(
                            "receiver.bearer_token",
                            "must not contain whitespace at either end or line breaks",
                        ));
                    }
                    (Some(Secret(t)), Some(TokenSource::ConfigFile))
                }
                _ => (None, None),
            }
        };
        if let Some(cred) = credential(CLIENT_KEY_CREDENTIAL) {
            client_key = Some(cred);
        }
        if client_cert.is_some() != client_key.is_some() {
            return Err(self.key_error(
                "receiver.client_cert",
                "client_cert and client_key must be set together (mutual TLS)",
            ));
        }
        Ok(ReceiverConfig {
            url,
            ca_bundle,
            client_cert,
            client_key,
            bearer_token,
            bearer_token_source,
            verify_tls,
            s3: None,
        })
    }
}

/// `scheme://user:secret@host/...` → `scheme://***@host/...`.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

fn read_token(path: &Path) -> Result<Secret, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    if token.contains(['\r', '\n']) {
        return Err(format!(
            "token file {} must hold a single line",
            path.display()
        ));
    }
    Ok(Secret(token.to_string()))
}

#[cfg(test)]
mod tests;
