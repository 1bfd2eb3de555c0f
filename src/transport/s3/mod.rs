//! The second kind of receiver: an S3-compatible object store.
//!
//! Every request goes through the shipper's own HTTP client
//! ([`Transport::send`]): the rate limit, the stall timeout, `ca_bundle`,
//! cancellation and progress are those of the HTTP receiver. rusty-s3
//! builds the S3 actions (URLs, query strings, XML answers), aws-sigv4
//! signs them; what the answers mean is decided in [`classify`], which
//! parts to send in [`plan`], both without I/O.
//!
//! One attempt ([`S3Transport::ship`]):
//! 1. look at the key first (`HEAD`): an object there already is a
//!    duplicate (our `x-amz-meta-sha256`) or an id reuse (another one), so
//!    the guarantee holds on stores that ignore `If-None-Match`;
//! 2. below the multipart threshold, one create-only `PutObject`
//!    (`If-None-Match: *`, the archive's SHA-256 as metadata and checksum);
//! 3. above it, a multipart upload: resumed when the retry state records
//!    one (its parts checked against `ListParts`), else created; each part
//!    carries its SHA-256 and is recorded after the store acknowledged it;
//!    the key is looked at again, then `CompleteMultipartUpload` with
//!    `If-None-Match: *`.

pub mod classify;
mod multipart;
pub mod plan;
mod request;

use crate::machine::host::Contact;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use base64::Engine;
use rusty_s3::{Bucket, S3Action, UrlStyle};

use crate::config::{ReceiverConfig, S3Receiver};
use crate::layout::MultipartProgress;
use crate::outcome::Verdict;

use super::{Progress, SetupError, StreamedBody, Transport, TransportError, Upload};
use classify::{ErrorKind, S3Error, existing_object, kind_of, verdict_of};
use plan::object_key;
use request::{Answer, Body, Req, Signer, exchange};

/// rusty-s3 wants an expiry for the URLs it builds; they are not
/// presigned here (the headers carry the signature), so it is unused.
const UNSIGNED: Duration = Duration::from_secs(1);

pub struct S3Transport {
    http: Transport,
    signer: Signer,
    bucket: Bucket,
    prefix: String,
    multipart_threshold: u64,
    part_size: u64,
}

impl std::fmt::Debug for S3Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Transport")
            .field("bucket", &self.bucket.name())
            .field("base_url", &self.bucket.base_url().as_str())
            .field("access_key_id", &self.signer.access_key_id)
            .field("secret", &self.signer.secret)
            .finish()
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub struct S3Attempt {
    pub verdict: Verdict,
    /// How far it got (a local failure says nothing about the store).
    pub contact: Contact,
    /// Archive bytes sent in this attempt (parts resent included).
    pub sent: u64,
}

/// Why an attempt stopped early.
enum Stop {
    Transport(TransportError),
    Verdict(Verdict),
}

impl From<TransportError> for Stop {
    fn from(e: TransportError) -> Stop {
        Stop::Transport(e)
    }
}

/// What a look at the key found.
enum Probe {
    Absent,
    Exists {
        meta_sha256: Option<String>,
        check: String,
    },
}

fn no_progress(_: Progress) {}

impl S3Transport {
    pub fn new(
        rcv: &ReceiverConfig,
        s3: &S3Receiver,
        stall_timeout: Duration,
    ) -> Result<S3Transport, SetupError> {
        let http = Transport::new(rcv, stall_timeout)?;
        let (endpoint, style) = match &s3.endpoint {
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", s3.region),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint = reqwest::Url::parse(&endpoint)
            .map_err(|e| SetupError::Url(format!("{endpoint}: {e}")))?;
        let bucket = Bucket::new(endpoint, style, s3.bucket.clone(), s3.region.clone())
            .map_err(|e| SetupError::Url(format!("bucket {}: {e}", s3.bucket)))?;
        Ok(S3Transport {
            http,
            signer: Signer {
                access_key_id: s3.access_key_id.clone(),
                secret: s3.secret_access_key.clone(),
                region: s3.region.clone(),
            },
            bucket,
            prefix: s3.prefix.clone(),
            multipart_threshold: s3.multipart_threshold,
            part_size: s3.part_size,
        })
    }

    pub fn with_rate_limit(self, schedule: crate::bandwidth::RateSchedule) -> S3Transport {
        S3Transport {
            http: self.http.with_rate_limit(schedule),
            ..self
        }
    }

    pub fn key(&self, host_id: &str, episode_id: &str) -> String {
        object_key(&self.prefix, host_id, episode_id)
    }

    /// Ship the staged archive. `state` is the multipart upload recorded in
    /// the retry state (if any); `persist` writes it after every change,
    /// before the next request.
    pub fn ship(
        &self,
        upload: &Upload<'_>,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> S3Attempt {
        let mut sent = 0u64;
        let result = self.attempt(upload, state, persist, cancel, on_progress, &mut sent);
        let (verdict, contact) = match result {
            Ok(v) | Err(Stop::Verdict(v)) => (v, Contact::Reached),
            Err(Stop::Transport(e)) => (Verdict::unanswered(e.to_string()), e.contact()),
        };
        // Settled without completing it: the upload is abandoned, abort it.
        if matches!(verdict, Verdict::Duplicate | Verdict::Quarantine { .. })
            && let Some(mp) = state.take()
        {
            if let Err(e) = self.abort(&mp, cancel) {
                tracing::warn!(EPISODE_ID = %upload.episode_id, "{e}");
            }
            persist(state);
        }
        S3Attempt {
            verdict,
            contact,
            sent,
        }
    }

    fn attempt(
        &self,
        upload: &Upload<'_>,
        state: &mut Option<MultipartProgress>,
        persist: &mut dyn FnMut(&Option<MultipartProgress>),
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
        sent: &mut u64,
    ) -> Result<Verdict, Stop> {
        let key = self.key(upload.host_id, upload.episode_id.as_str());
        let ours = crate::ship::hex(&upload.sha256);
        if let Probe::Exists { meta_sha256, check } = self.probe(&key, cancel)? {
            return Ok(existing_object(meta_sha256.as_deref(), &ours, check));
        }
        if upload.bytes < self.multipart_threshold {
            return self.put_single(&key, upload, cancel, on_progress, sent);
        }
        self.put_multipart(&key, upload, state, persist, cancel, on_progress, sent)
    }

    fn request(
        &self,
        req: Req,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Answer, TransportError> {
        exchange(&self.http, &self.signer, req, cancel, on_progress)
    }

    /// `HEAD` of the key; an unexpected answer is asked again as a ranged
    /// `GET`, whose body names the error (a `HEAD` answer has none).
    fn probe(&self, key: &str, cancel: &AtomicBool) -> Result<Probe, Stop> {
        let url = self.bucket.head_object(None, key).sign(UNSIGNED);
        let check = format!("HEAD {}", url.path());
        let head = self.request(
            Req {
                method: reqwest::Method::HEAD,
                url,
                headers: Vec::new(),
                body: Body::None,
            },
            cancel,
            &mut no_progress,
        )?;
        match head.status {
            200..=299 => Ok(Probe::Exists {
                check: format!(
                    "{check} answered {} with x-amz-meta-sha256 {}",
                    head.status,
                    head.meta_sha256.as_deref().unwrap_or("(none)")
                ),
                meta_sha256: head.meta_sha256,
            }),
            404 => Ok(Probe::Absent),
            _ => {
                let url = self.bucket.get_object(None, key).sign(UNSIGNED);
                let get = self.request(
                    Req {
                        method: reqwest::Method::GET,
                        url,
                        headers: vec![("range", "bytes=0-0".into())],
                        body: Body::None,
                    },
                    cancel,
                    &mut no_progress,
                )?;
                let err = if get.status >= 300 {
                    S3Error::parse(get.status, &get.body)
                } else {
                    S3Error::parse(head.status, "")
                };
                Err(Stop::Verdict(verdict_of(&err)))
            }
        }
    }

    /// After a create-only write was refused: what is under the key?
    fn after_exists(&self, key: &str, ours: &str, cancel: &AtomicBool) -> Result<Verdict, Stop> {
        match self.probe(key, cancel)? {
            Probe::Exists { meta_sha256, check } => {
                Ok(existing_object(meta_sha256.as_deref(), ours, check))
            }
            Probe::Absent => Ok(Verdict::Transient {
                status: Some(412),
                reason: "the store refused the create-only write, but holds no object under \
                         the key: tried again later"
                    .into(),
                retry_after: None,
            }),
        }
    }

    fn put_single(
        &self,
        key: &str,
        upload: &Upload<'_>,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
        sent: &mut u64,
    ) -> Result<Verdict, Stop> {
        let file = open_archive(upload)?;
        let ours = crate::ship::hex(&upload.sha256);
        let url = self.bucket.put_object(None, key).sign(UNSIGNED);
        let answer = self.request(
            Req {
                method: reqwest::Method::PUT,
                url,
                headers: vec![
                    ("content-type", "application/gzip".into()),
                    ("if-none-match", "*".into()),
                    ("x-amz-checksum-sha256", b64(&upload.sha256)),
                    ("x-amz-meta-sha256", ours.clone()),
                ],
                body: Body::File(StreamedBody {
                    file,
                    bytes: upload.bytes,
                }),
            },
            cancel,
            on_progress,
        )?;
        *sent += upload.bytes - answer.unsent;
        if (200..300).contains(&answer.status) {
            return Ok(stored(answer.status, answer.unsent));
        }
        let err = S3Error::parse(answer.status, &answer.body);
        match kind_of(&err) {
            ErrorKind::Exists => self.after_exists(key, &ours, cancel),
            _ => Ok(verdict_of(&err)),
        }
    }

    /// Abort a multipart upload of ours (its parts stop costing storage).
    pub fn abort(&self, mp: &MultipartProgress, cancel: &AtomicBool) -> Result<(), String> {
        let url = self
            .bucket
            .abort_multipart_upload(None, &mp.key, &mp.upload_id)
            .sign(UNSIGNED);
        let answer = self
            .request(
                Req {
                    method: reqwest::Method::DELETE,
                    url,
                    headers: Vec::new(),
                    body: Body::None,
                },
                cancel,
                &mut no_progress,
            )
            .map_err(|e| format!("cannot abort multipart upload {}: {e}", mp.upload_id))?;
        match answer.status {
            200..=299 => Ok(()),
            // Gone already: nothing left to clean.
            404 => Ok(()),
            _ => Err(format!(
                "cannot abort multipart upload {}: {}",
                mp.upload_id,
                S3Error::parse(answer.status, &answer.body).reason()
            )),
        }
    }
}

/// A 2xx counts only if the store can have read the whole body.
fn stored(status: u16, unsent: u64) -> Verdict {
    if unsent > 0 {
        Verdict::Transient {
            status: Some(status),
            reason: format!(
                "answered HTTP {status} before the whole body was sent ({unsent} bytes unsent): \
                 not counted as shipped"
            ),
            retry_after: None,
        }
    } else {
        Verdict::Shipped { status }
    }
}

fn transient_restart(why: &str) -> Verdict {
    Verdict::Transient {
        status: Some(400),
        reason: format!("{why}; the next attempt starts a new multipart upload"),
        retry_after: None,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn open_archive(upload: &Upload<'_>) -> Result<std::fs::File, TransportError> {
    crate::layout::open_nofollow(upload.archive).map_err(archive_error(upload))
}

fn archive_error(upload: &Upload<'_>) -> impl Fn(std::io::Error) -> TransportError {
    let path = upload.archive.display().to_string();
    move |e| TransportError::Archive(format!("{path}: {e}"))
}

#[cfg(test)]
mod tests;
