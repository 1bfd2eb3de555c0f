//! `[receiver]` with an `s3://bucket/prefix` url: an S3-compatible object
//! store instead of the HTTP receiver (see `transport::s3`).
//!
//! ```toml
//! [receiver]
//! url = "s3://lab-episodes/raw"
//! endpoint = "https://rgw.lab.example:7480"   # omitted: AWS, from `region`
//! region = "us-east-1"
//! access_key_id = "..."
//! secret_access_key_file = "/etc/cis490/s3-secret"  # or the credential s3-secret-access-key
//! ca_bundle = "/etc/cis490/ca.pem"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, Parser, ReceiverConfig, Secret, Section};

/// systemd credential holding the secret access key (`LoadCredential=`).
pub const S3_SECRET_CREDENTIAL: &str = "s3-secret-access-key";
pub const MIB: u64 = 1024 * 1024;
/// Parts of a multipart upload: small enough that a drop loses little,
/// large enough that 10,000 parts hold 625 GiB.
pub const DEFAULT_PART_SIZE: u64 = 64 * MIB;
/// Archives from this size on go up in multipart (resumable).
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 * MIB;
/// S3's smallest part (all but the last) and largest part.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

/// Keys of the HTTP receiver that mean nothing to an object store: an
/// error rather than silently unused credentials.
const HTTP_ONLY_KEYS: [&str; 4] = [
    "bearer_token",
    "bearer_token_file",
    "client_cert",
    "client_key",
];

/// Where the secret access key came from (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Credential(PathBuf),
}

impl SecretSource {
    pub fn path(&self) -> &Path {
        match self {
            SecretSource::File(p) | SecretSource::Credential(p) => p,
        }
    }

    /// The config key (or credential) to name in messages.
    pub fn key(&self) -> &'static str {
        match self {
            SecretSource::File(_) => "receiver.secret_access_key_file",
            SecretSource::Credential(_) => "receiver.secret_access_key_file (credential)",
        }
    }
}

#[derive(Clone)]
pub struct S3Receiver {
    pub bucket: String,
    /// Key prefix without slashes at either end; may be empty.
    pub prefix: String,
    /// `None`: AWS (`https://s3.{region}.amazonaws.com`, virtual-host style).
    /// Otherwise the store's base URL, addressed path-style.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub secret_source: SecretSource,
    /// Archives of at least this many bytes go up in multipart.
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl fmt::Debug for S3Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Secret` redacts itself; spelled out so nobody adds a raw field.
        f.debug_struct("S3Receiver")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("secret_source", &self.secret_source)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// The secret access key in a file (or credential): one non-empty line.
/// Also what `--check-config` runs on `secret_access_key_file`.
pub fn read_secret(path: &Path) -> Result<Secret, String> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret key file {}: {e}", path.display()))?;
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(format!("the secret key file {} is empty", path.display()));
    }
    if secret.contains(['\r', '\n', ' ', '\t']) {
        return Err(format!(
            "the secret key file {} must hold the key alone, on one line",
            path.display()
        ));
    }
    Ok(Secret(secret.to_string()))
}

/// Is the secret still readable where the config says? For
/// `--check-config` after loading: the message names key and file.
pub fn check_secret(s3: &S3Receiver) -> Result<(), String> {
    read_secret(s3.secret_source.path())
        .map(|_| ())
        .map_err(|m| format!("{}: {m}", s3.secret_source.key()))
}

/// `"64M"`, `"5M"`, `"1G"` or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"64M\""))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1024,
        "M" | "MiB" => MIB,
        "G" | "GiB" => 1024 * MIB,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `s3://bucket/prefix/` → (bucket, prefix without slashes at the ends).
pub fn split_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3:// url"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err(format!(
            "{url:?}: {bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' \
             and '.')"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|seg| seg == "." || seg == "..")
        || prefix.contains("//")
        || prefix.contains(|c: char| c.is_control() || matches!(c, '?' | '#'))
    {
        return Err(format!(
            "{url:?}: the key prefix must be plain path segments (no '.', '..', '//', '?', '#')"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl Parser<'_> {
    /// The rest of `[receiver]` for an `s3://` url.
    pub(super) fn s3_receiver(
        &mut self,
        mut rcv: Section,
        url: String,
        credentials_dir: Option<&Path>,
    ) -> Result<ReceiverConfig, ConfigError> {
        for key in HTTP_ONLY_KEYS {
            if rcv.table.contains_key(key) {
                return Err(self.key_error(
                    &rcv.key(key),
                    "is for the HTTP receiver: an s3:// url authenticates with access_key_id \
                     and secret_access_key_file (or the s3-secret-access-key credential)",
                ));
            }
        }
        let (bucket, prefix) = split_s3_url(&url).map_err(|m| self.key_error("receiver.url", m))?;
        let endpoint = match self.optional_str(&mut rcv, "endpoint")? {
            None => None,
            Some(e) if e.trim().is_empty() => None,
            Some(e) => Some(self.endpoint(e.trim_end_matches('/'))?),
        };
        let region = self
            .optional_str(&mut rcv, "region")?
            .filter(|r| !r.trim().is_empty());
        let region = match (region, &endpoint) {
            (Some(r), _) => r,
            // Most S3-compatible stores accept any region in the signature.
            (None, Some(_)) => "us-east-1".to_string(),
            (None, None) => {
                return Err(self.key_error(
                    "receiver.region",
                    "required with an s3:// url and no endpoint (AWS)",
                ));
            }
        };
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(self.key_error("receiver.region", format!("{region:?} is not a region")));
        }
        let access_key_id = self.required_str(&mut rcv, "access_key_id")?;
        if access_key_id.trim() != access_key_id || access_key_id.contains(char::is_control) {
            return Err(self.key_error(
                "receiver.access_key_id",
                "must not contain whitespace or control characters",
            ));
        }
        let secret_file = self.optional_path(&mut rcv, "secret_access_key_file")?;
        let ca_bundle = self.optional_path(&mut rcv, "ca_bundle")?;
        let verify_tls = self.bool(&mut rcv, "verify_tls", true)?;
        let part_size = self.size(&mut rcv, "part_size", DEFAULT_PART_SIZE)?;
        let multipart_threshold =
            self.size(&mut rcv, "multipart_threshold", DEFAULT_MULTIPART_THRESHOLD)?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(self.key_error(
                "receiver.part_size",
                "must be between 5M and 5G (S3's part size limits)",
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&multipart_threshold) {
            // Above 5G a single PutObject is refused (EntityTooLarge).
            return Err(self.key_error(
                "receiver.multipart_threshold",
                "must be between 5M and 5G (S3's smallest part, its largest single upload)",
            ));
        }
        self.finish(rcv)?;

        // A systemd credential wins: it is how the units deliver secrets.
        let credential = credentials_dir
            .map(|d| d.join(S3_SECRET_CREDENTIAL))
            .filter(|p| p.is_file());
        let secret_source = match (credential, secret_file) {
            (Some(c), _) => SecretSource::Credential(c),
            (None, Some(f)) => SecretSource::File(f),
            (None, None) => {
                return Err(self.key_error(
                    "receiver.secret_access_key_file",
                    format!(
                        "required with an s3:// url (or the systemd credential \
                         {S3_SECRET_CREDENTIAL})"
                    ),
                ));
            }
        };
        let secret_access_key = read_secret(secret_source.path())
            .map_err(|m| self.key_error(secret_source.key(), m))?;
        Ok(ReceiverConfig {
            url,
            ca_bundle,
            client_cert: None,
            client_key: None,
            bearer_token: None,
            bearer_token_source: None,
            verify_tls,
            s3: Some(Box::new(S3Receiver {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                secret_source,
                multipart_threshold,
                part_size,
            })),
        })
    }

    fn endpoint(&mut self, e: &str) -> Result<String, ConfigError> {
        match reqwest::Url::parse(e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(self.key_error(
                        "receiver.endpoint",
                        "must not carry user information (user:password@)",
                    ));
                }
                if u.query().is_some() || u.fragment().is_some() || u.path() != "/" {
                    return Err(self.key_error(
                        "receiver.endpoint",
                        format!("{e:?} must be the store's base URL (no path, query or fragment)"),
                    ));
                }
                if u.scheme() == "http" {
                    self.warnings.push(format!(
                        "{}: receiver.endpoint uses plain http: uploads are not encrypted",
                        self.file.display()
                    ));
                }
                Ok(e.to_string())
            }
            Ok(_) => Err(self.key_error(
                "receiver.endpoint",
                format!("{e:?} must be an http:// or https:// URL with a host"),
            )),
            Err(err) => Err(self.key_error("receiver.endpoint", format!("{e:?}: {err}"))),
        }
    }

    fn size(&self, s: &mut Section, name: &str, default: u64) -> Result<u64, ConfigError> {
        match s.table.remove(name) {
            None => Ok(default),
            Some(toml::Value::String(t)) => {
                parse_size(&t).map_err(|m| self.key_error(&s.key(name), m))
            }
            Some(toml::Value::Integer(i)) if i > 0 => Ok(i as u64),
            Some(other) => Err(self.type_error(s, name, "a size like \"64M\"", &other)),
        }
    }
}

#[cfg(test)]
mod tests;
