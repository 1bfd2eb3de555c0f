//! Our own mutual-TLS identity (`receiver.client_cert` and its key): can it
//! be used now?
//!
//! An expired, not yet valid or mismatched client certificate fails every
//! TLS handshake, and the receiver's side of that failure does not say
//! why. So the shipper looks before it uploads anything, and refuses to
//! start with the file and the date; `doctor` warns before the date.
//!
//! [`check`] is pure: the two PEM files and a time in, the certificate's
//! subject and dates (or the problem) out. [`inspect`] is the part that does
//! not depend on the time, so a long-running process keeps the dates and
//! only compares them with the clock ([`CertInfo::problem_at`]).

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::Certificate;
use x509_cert::der::Decode;

use crate::config::CLIENT_KEY_CREDENTIAL;
use crate::time::{DAY, utc_minutes};

/// `doctor` turns yellow this long before the certificate expires.
pub const WARN_BEFORE_EXPIRY: u64 = 14 * DAY;

/// The command that makes the long-running shipper read renewed files
/// (`ship-episode` reads them at every start).
const RESTART_SCANNER: &str = "systemctl restart cis490-ship-scanner";

/// The first certificate of `receiver.client_cert` (the one presented).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514 form, e.g. `CN=lab-7`.
    pub subject: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
}

/// Why the identity cannot be used. Key problems never carry key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("certificate unreadable: {0}")]
    CertUnreadable(String),
    #[error("private key unreadable: {0}")]
    KeyUnreadable(String),
    #[error("the private key does not match the certificate ({subject})")]
    KeyMismatch { subject: String },
    #[error("certificate expired on {}", utc_minutes(*not_after))]
    Expired { not_after: u64 },
    #[error("certificate not valid before {}", utc_minutes(*not_before))]
    NotYetValid { not_before: u64, now: u64 },
}

impl CertInfo {
    /// The date problem at `now`, if any. Cheap: no file is read. Both
    /// ends are inclusive (RFC 5280 4.1.2.5).
    pub fn problem_at(&self, now: u64) -> Option<CertProblem> {
        if now < self.not_before {
            Some(CertProblem::NotYetValid {
                not_before: self.not_before,
                now,
            })
        } else if now > self.not_after {
            Some(CertProblem::Expired {
                not_after: self.not_after,
            })
        } else {
            None
        }
    }
}

/// Parse the certificate and the key, and check that they belong together
/// and that the certificate is valid at `now` (unix seconds).
pub fn check(cert_pem: &[u8], key_pem: &[u8], now: u64) -> Result<CertInfo, CertProblem> {
    let info = inspect(cert_pem, key_pem)?;
    match info.problem_at(now) {
        Some(problem) => Err(problem),
        None => Ok(info),
    }
}

/// [`check`] without the dates: parse both files and match the key's public
/// half against the certificate's SubjectPublicKeyInfo.
pub fn inspect(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, CertProblem> {
    let (cert_der, info) = parse_cert(cert_pem)?;

    // No detail from the PEM parser here: it might quote the file.
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        CertProblem::KeyUnreadable(match e {
            pem::Error::NoItemsFound => {
                "holds no unencrypted PEM private key (PKCS#8, RSA or EC)".into()
            }
            _ => "not a valid PEM private key".into(),
        })
    })?;
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key_der)
        .map_err(|_| CertProblem::KeyUnreadable("not an RSA, ECDSA or Ed25519 key".into()))?;
    let certified = rustls::sign::CertifiedKey::new(vec![cert_der.into_owned()], signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(info),
        // A key type that cannot tell its public half: rustls accepts it
        // too, so this does not refuse it either.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(info),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertProblem::KeyMismatch {
                subject: info.subject,
            })
        }
        Err(e) => Err(CertProblem::CertUnreadable(format!(
            "rustls cannot use it: {e}"
        ))),
    }
}

/// The dates and subject of the certificate alone (no key needed): what
/// the metrics publish.
pub fn cert_info(cert_pem: &[u8]) -> Result<CertInfo, CertProblem> {
    parse_cert(cert_pem).map(|(_, info)| info)
}

/// The first PEM certificate of `cert_pem`, and what it says.
fn parse_cert(cert_pem: &[u8]) -> Result<(CertificateDer<'_>, CertInfo), CertProblem> {
    let cert_der = match CertificateDer::pem_slice_iter(cert_pem).next() {
        Some(Ok(der)) => der,
        Some(Err(e)) => return Err(CertProblem::CertUnreadable(format!("bad PEM: {e}"))),
        None => {
            return Err(CertProblem::CertUnreadable(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
    };
    let cert = Certificate::from_der(&cert_der)
        .map_err(|e| CertProblem::CertUnreadable(format!("not an X.509 certificate: {e}")))?;
    let tbs = cert.tbs_certificate();
    let info = CertInfo {
        subject: tbs.subject().to_string(),
        not_before: tbs.validity().not_before.to_unix_duration().as_secs(),
        not_after: tbs.validity().not_after.to_unix_duration().as_secs(),
    };
    Ok((cert_der, info))
}

/// The two files, as named in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The key came from the systemd credential, not `receiver.client_key`.
    pub key_is_credential: bool,
}

impl IdentityFiles {
    /// The files the shipper uses, under `$CREDENTIALS_DIRECTORY` if set.
    pub fn new(cert: &Path, key: &Path) -> IdentityFiles {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        IdentityFiles::with_credentials_dir(cert, key, credentials.as_deref())
    }

    /// The config replaces `receiver.client_key` with the credential's path
    /// when there is one: that is how it is told apart.
    pub fn with_credentials_dir(
        cert: &Path,
        key: &Path,
        credentials: Option<&Path>,
    ) -> IdentityFiles {
        IdentityFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            key_is_credential: credentials
                .is_some_and(|dir| key == dir.join(CLIENT_KEY_CREDENTIAL)),
        }
    }

    fn cert_label(&self) -> String {
        format!("receiver.client_cert {}", self.cert.display())
    }

    fn key_label(&self) -> String {
        if self.key_is_credential {
            format!(
                "the {CLIENT_KEY_CREDENTIAL} credential {}",
                self.key.display()
            )
        } else {
            format!("receiver.client_key {}", self.key.display())
        }
    }

    /// Where the key comes from: the credential's source (install.sh
    /// copies it from there), or the configured file.
    fn key_source(&self) -> String {
        if self.key_is_credential {
            format!("/etc/cis490/credentials/{CLIENT_KEY_CREDENTIAL}")
        } else {
            self.key.display().to_string()
        }
    }

    /// Where to put a new key, and what makes the units see it.
    fn key_home(&self) -> String {
        if self.key_is_credential {
            format!(
                "{} (then `dpkg-reconfigure cis490-shipper`, or re-run scripts/install.sh)",
                self.key_source()
            )
        } else {
            self.key_source()
        }
    }

    /// What is wrong, naming the file and the date: one line for stderr,
    /// the journal and `doctor`.
    pub fn describe(&self, problem: &CertProblem) -> String {
        let cert = self.cert_label();
        match problem {
            CertProblem::CertUnreadable(why) => format!("{cert}: {why}"),
            CertProblem::KeyUnreadable(why) => format!("{}: {why}", self.key_label()),
            CertProblem::KeyMismatch { subject } => format!(
                "{} does not match the certificate in {cert} ({subject}): the receiver \
                 would refuse every upload",
                self.key_label()
            ),
            CertProblem::Expired { not_after } => {
                format!("{cert} expired on {}", utc_minutes(*not_after))
            }
            CertProblem::NotYetValid { not_before, now } => format!(
                "{cert} is not valid before {} (this host's clock says {})",
                utc_minutes(*not_before),
                utc_minutes(*now)
            ),
        }
    }

    /// What to do about it, and how to see that it worked.
    pub fn fix(&self, problem: &CertProblem) -> String {
        let cert = self.cert.display();
        let then = format!("then `{RESTART_SCANNER}` and check with `doctor`");
        match problem {
            CertProblem::CertUnreadable(_) => format!(
                "put this host's PEM client certificate in {cert} (readable by user cis490), \
                 {then}"
            ),
            CertProblem::KeyUnreadable(_) => format!(
                "put the PEM private key that {cert} was issued for in {}, {then}",
                self.key_home()
            ),
            CertProblem::KeyMismatch { .. } => format!(
                "install the private key that {cert} was issued for in {}, or a certificate \
                 issued for this key in {cert} (`openssl x509 -in {cert} -noout -pubkey` and \
                 `openssl pkey -in {} -pubout` must print the same), {then}",
                self.key_home(),
                self.key_source()
            ),
            CertProblem::Expired { .. } => format!(
                "renew it: have the receiver's CA issue a new certificate for this host, \
                 write it to {cert} (and its key to {} if that changed too), {then}",
                self.key_home()
            ),
            CertProblem::NotYetValid { .. } => format!(
                "check this host's clock first (`timedatectl`); if it is right, the \
                 certificate in {cert} was issued for a later date: wait for it or have it \
                 reissued, {then}"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
