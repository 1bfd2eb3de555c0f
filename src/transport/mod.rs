//! HTTP(S) upload of one staged archive to the receiver.
//!
//! Built on reqwest's async client, driven by a private single-threaded
//! runtime so callers see a plain blocking call. The async client is what
//! makes three things possible that the blocking one cannot do:
//! - a *stall* timeout (no bytes moving for `request_timeout`) instead of a
//!   limit on the whole transfer, which would cut large episodes off;
//! - a receiver that answers early (say 400) while the body is still being
//!   sent is classified by its status: the blocking client finishes sending
//!   the body before it looks at the response, and so reports a broken pipe;
//! - cancellation within a fraction of a second (SIGTERM of the scanner).

mod body;
mod headers;
pub mod s3;

use crate::machine::host::Contact;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use crate::bandwidth::{RateSchedule, Throttle};
use crate::client_cert::{self, CertInfo, IdentityFiles};
use crate::config::ReceiverConfig;
use crate::layout::EpisodeId;
use body::{body_stream, feed_body};
pub use headers::{MAX_RETRY_AFTER, parse_retry_after, parse_sha256_digest};

/// How often progress, stalls and cancellation are looked at.
const TICK: Duration = Duration::from_millis(200);
/// Upload chunk size read from the staged archive.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// How much of a response body is kept as the reason (quarantine sidecar, logs).
pub const BODY_EXCERPT_BYTES: usize = 512;

pub const USER_AGENT: &str = concat!("cis490-shipper/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("receiver.{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("receiver.{key}: {path}: {message}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    /// Our own certificate cannot be used (expired, not yet valid, a key
    /// that does not match): a host-level error, nothing is uploaded.
    #[error("{message}: {fix}")]
    ClientCert { message: String, fix: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("receiver.url: cannot build the upload URL for {0}")]
    Url(String),
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// SHA-256 the receiver reports for what it holds (`Repr-Digest`), if any.
    pub repr_sha256: Option<[u8; 32]>,
    /// The first bytes of the response body, lossily decoded and trimmed.
    pub body_excerpt: String,
    /// Bytes of the request body the connection had not yet taken when the
    /// answer arrived (0: the whole body had been handed over, or there was
    /// none). A 2xx with bytes unsent cannot mean "stored".
    pub unsent: u64,
}

/// The answer to a confirming request ([`Transport::confirm`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    /// What was asked, e.g. `HEAD /episodes/lab-7/ep-1` (the URL's path:
    /// no host, no credentials).
    pub request: String,
    pub result: Result<Reply, TransportError>,
}

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to the receiver: {0}")]
    Connect(String),
    #[error("TLS failure talking to the receiver: {0}")]
    Tls(String),
    #[error("upload stalled: no progress for {0:?}")]
    Stalled(Duration),
    #[error("upload cancelled (shutting down)")]
    Cancelled,
    #[error("cannot read the staged archive: {0}")]
    Archive(String),
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
}

impl TransportError {
    /// How far the attempt got: whether the failure can be the receiver's
    /// or the episode's.
    pub fn contact(&self) -> Contact {
        match self {
            TransportError::Cancelled | TransportError::Archive(_) => Contact::Local,
            TransportError::Connect(_) | TransportError::Tls(_) => Contact::NotReached,
            TransportError::Stalled(_) | TransportError::Protocol(_) => Contact::Reached,
        }
    }
}

/// Progress of one upload, reported every tick.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub sent: u64,
    pub total: u64,
    /// True when bytes moved since the previous report.
    pub moved: bool,
}

/// A request body read from a file, from its current position.
pub(crate) struct StreamedBody {
    pub file: std::fs::File,
    pub bytes: u64,
}

/// An archive ready to go: path, size and digest.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub host_id: &'a str,
    pub episode_id: &'a EpisodeId,
    pub archive: &'a Path,
    pub bytes: u64,
    pub sha256: [u8; 32],
}

pub struct Transport {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    base_url: reqwest::Url,
    bearer: Option<String>,
    stall_timeout: Duration,
    /// The client certificate's dates, read once at setup.
    client_cert: Option<(IdentityFiles, CertInfo)>,
    /// `shipper.upload_rate_limit`: one bucket for every upload of this
    /// process, so a run of small episodes is paced too.
    throttle: std::sync::Mutex<Option<Throttle>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Transport")
            .field("base_url", &self.base_url.as_str())
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

impl Transport {
    pub fn new(rcv: &ReceiverConfig, stall_timeout: Duration) -> Result<Transport, SetupError> {
        let base_url = reqwest::Url::parse(&rcv.url).map_err(|e| SetupError::Url(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(stall_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // Redirecting a PUT body is never what the receiver means.
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_rustls();
        if let Some(path) = &rcv.ca_bundle {
            let pem = read_file("ca_bundle", path)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::Invalid {
                    key: "ca_bundle",
                    path: path.clone(),
                    message: format!("not a PEM certificate bundle: {e}"),
                })?;
            if certs.is_empty() {
                return Err(SetupError::Invalid {
                    key: "ca_bundle",
                    path: path.clone(),
                    message: "holds no certificate".into(),
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        let mut client_cert = None;
        if let (Some(cert), Some(key)) = (&rcv.client_cert, &rcv.client_key) {
            let mut pem = read_file("client_cert", cert)?;
            let key_pem = read_file("client_key", key)?;
            let files = IdentityFiles::new(cert, key);
            let info = client_cert::check(&pem, &key_pem, crate::layout::unix_now())
                .map_err(|problem| client_cert_error(&files, &problem))?;
            pem.push(b'\n');
            pem.extend(key_pem);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| SetupError::Invalid {
                key: "client_cert",
                path: cert.clone(),
                message: format!("client certificate and key do not load: {e}"),
            })?;
            builder = builder.identity(identity);
            client_cert = Some((files, info));
        }
        if !rcv.verify_tls {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| SetupError::Client(error_chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Transport {
            client,
            runtime,
            base_url,
            bearer: rcv.bearer_token.as_ref().map(|s| s.expose().to_string()),
            stall_timeout,
            client_cert,
            throttle: std::sync::Mutex::new(None),
        })
    }

    /// Pace uploads to `shipper.upload_rate_limit`.
    pub fn with_rate_limit(self, schedule: RateSchedule) -> Transport {
        let throttle = (!schedule.is_unlimited()).then(|| Throttle::new(schedule));
        Transport {
            throttle: std::sync::Mutex::new(throttle),
            ..self
        }
    }

    /// Is the client certificate still valid at `now`? For a long-running
    /// process, before each pass: compares the dates read at setup with the
    /// clock, reads no file.
    pub fn check_client_cert(&self, now: u64) -> Result<(), SetupError> {
        match &self.client_cert {
            Some((files, info)) => match info.problem_at(now) {
                Some(problem) => Err(client_cert_error(files, &problem)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// `{url}/episodes/{host_id}/{episode_id}`, each segment percent-encoded.
    pub fn episode_url(&self, host_id: &str, id: &EpisodeId) -> Result<reqwest::Url, SetupError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| SetupError::Url(self.base_url.to_string()))?
            .pop_if_empty()
            .extend(["episodes", host_id, id.as_str()]);
        Ok(url)
    }

    /// PUT the archive. Blocks until the receiver answers, the upload stalls
    /// for the stall timeout, or `cancel` is set ([`Transport::send`]);
    /// [`Reply::unsent`] says how much of the body the connection had not
    /// taken when the answer arrived.
    pub fn put(
        &self,
        upload: &Upload<'_>,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Reply, TransportError> {
        let url = self
            .episode_url(upload.host_id, upload.episode_id)
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let file = crate::layout::open_nofollow(upload.archive)
            .map_err(|e| TransportError::Archive(format!("{}: {e}", upload.archive.display())))?;
        let digest = base64::engine::general_purpose::STANDARD.encode(upload.sha256);
        let mut request = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .header("Content-Digest", format!("sha-256=:{digest}:"));
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let body = StreamedBody {
            file,
            bytes: upload.bytes,
        };
        self.send(request, Some(body), cancel, on_progress, read_reply)
    }

    /// Send one request, its body (if any) streamed from a file, and read
    /// the answer with `read` (given the bytes of the body the connection
    /// had not taken when the answer arrived). Blocks until the answer is
    /// read, nothing moves for the stall timeout, or `cancel` is set.
    ///
    /// The body goes through a channel of one chunk, filled by this task
    /// and emptied by the connection's: when the answer's head arrives, the
    /// connection can have taken at most that one chunk more, so the unsent
    /// count is right. (Reading the file inside the connection's task would
    /// let it go on sending many MiB before this task sees the answer.)
    pub(crate) fn send<T, F, Fut>(
        &self,
        request: reqwest::RequestBuilder,
        body: Option<StreamedBody>,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
        read: F,
    ) -> Result<T, TransportError>
    where
        F: FnOnce(reqwest::Response, u64) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let taken = Arc::new(AtomicU64::new(0));
        let total = body.as_ref().map_or(0, |b| b.bytes);
        let (request, source) = match body {
            Some(StreamedBody { file, bytes }) => {
                let (chunks, pending) = tokio::sync::mpsc::channel(1);
                let stream = reqwest::Body::wrap_stream(body_stream(pending, taken.clone()));
                let request = request
                    .header(reqwest::header::CONTENT_LENGTH, bytes)
                    .body(stream);
                (request, Some((file, chunks)))
            }
            None => (request, None),
        };
        let stall = self.stall_timeout;
        // Taken for this upload and put back after it: the bucket's state
        // carries over to the next upload.
        let mut throttle = self.throttle.lock().ok().and_then(|mut t| t.take());

        let result = self.runtime.block_on(async {
            let exchange = async {
                let response = request.send().await.map_err(classify_error)?;
                // Read in the same poll that saw the answer's head, before
                // this task feeds the connection another chunk.
                let unsent = total.saturating_sub(taken.load(Ordering::Relaxed));
                read(response, unsent).await
            };
            let has_body = source.is_some();
            let feed = async {
                if let Some((file, chunks)) = source {
                    feed_body(file, total, chunks, throttle.as_mut()).await;
                }
            };
            tokio::pin!(exchange, feed);
            let mut fed = !has_body;
            let mut ticker = tokio::time::interval(TICK);
            let mut last_sent = 0u64;
            let mut last_move = Instant::now();
            loop {
                tokio::select! {
                    // The answer first: once it is here, feed nothing more.
                    biased;
                    reply = &mut exchange => return reply,
                    () = &mut feed, if !fed => fed = true,
                    _ = ticker.tick() => {
                        let now_sent = taken.load(Ordering::Relaxed);
                        let moved = now_sent != last_sent;
                        if moved {
                            last_sent = now_sent;
                            last_move = Instant::now();
                        }
                        on_progress(Progress { sent: now_sent, total, moved });
                        if cancel.load(Ordering::Relaxed) {
                            return Err(TransportError::Cancelled);
                        }
                        // Waiting for the answer after the last byte counts
                        // as a stall too: a receiver that never answers.
                        if last_move.elapsed() >= stall {
                            return Err(TransportError::Stalled(stall));
                        }
                    }
                }
            }
        });
        if let Some(t) = throttle
            && let Ok(mut slot) = self.throttle.lock()
        {
            *slot = Some(t);
        }
        result
    }

    /// Ask about one episode without sending it: `HEAD` of its URL, with
    /// the client and credentials of the upload, given up after the stall
    /// timeout. Used to confirm a refusal before it settles anything: a
    /// proxy or TLS terminator that refused the upload refuses this too,
    /// while the receiver answers 404 (not stored) or 200.
    pub fn confirm(&self, host_id: &str, id: &EpisodeId, cancel: &AtomicBool) -> Confirmation {
        let url = match self.episode_url(host_id, id) {
            Ok(url) => url,
            Err(e) => {
                return Confirmation {
                    request: format!("HEAD /episodes/{host_id}/{id}"),
                    result: Err(TransportError::Protocol(e.to_string())),
                };
            }
        };
        let request_line = format!("HEAD {}", url.path());
        let mut request = self.client.head(url);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let stall = self.stall_timeout;
        let result = self.runtime.block_on(async {
            let exchange = async {
                let response = request.send().await.map_err(classify_error)?;
                read_reply(response, 0).await
            };
            tokio::pin!(exchange);
            let started = Instant::now();
            let mut ticker = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    reply = &mut exchange => return reply,
                    _ = ticker.tick() => {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(TransportError::Cancelled);
                        }
                        if started.elapsed() >= stall {
                            return Err(TransportError::Stalled(stall));
                        }
                    }
                }
            }
        });
        Confirmation {
            request: request_line,
            result,
        }
    }
}

fn client_cert_error(files: &IdentityFiles, problem: &client_cert::CertProblem) -> SetupError {
    SetupError::ClientCert {
        message: files.describe(problem),
        fix: files.fix(problem),
    }
}

async fn read_reply(mut response: reqwest::Response, unsent: u64) -> Result<Reply, TransportError> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let repr_sha256 = response
        .headers()
        .get("Repr-Digest")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_sha256_digest);
    // Only the start of the body matters, and a receiver that closes early
    // may cut it short: keep what arrived.
    let mut excerpt = Vec::new();
    while excerpt.len() < BODY_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    excerpt.truncate(BODY_EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&excerpt);
    let body_excerpt = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    Ok(Reply {
        status,
        retry_after,
        repr_sha256,
        body_excerpt,
        unsent,
    })
}

fn classify_error(e: reqwest::Error) -> TransportError {
    let detail = error_chain(&e);
    if has_tls_cause(&e) {
        TransportError::Tls(detail)
    } else if e.is_connect() {
        TransportError::Connect(detail)
    } else if e.is_body() && detail.contains("staged archive") {
        TransportError::Archive(detail)
    } else {
        TransportError::Protocol(detail)
    }
}

fn has_tls_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// "a: b: c" from an error and its sources, without repeats.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests;
