//! Request routing and the episode upload logic.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

use crate::behave::{self, Action, Rules};
use crate::conn::Conn;
use crate::http::{self, HeadError, Request, Response};

/// Body read buffer; also the unit of file writes.
const BUF_SIZE: usize = 256 * 1024;
/// Bodies up to this size are drained (keeping the connection alive) when we answer
/// without needing them; larger ones get an early answer and a graceful close.
const DRAIN_LIMIT: u64 = 1024 * 1024;
/// How much of the body the `stall` behaviour reads before it stops reading.
const STALL_READ: u64 = 64 * 1024;
const STALL_MAX: Duration = Duration::from_secs(3600);
const MAX_CONTROL_BODY: u64 = 4096;
/// How many episode requests `GET /_control/stats` lists (the latest ones).
const REQUEST_LOG_MAX: usize = 10_000;

#[derive(Default)]
pub struct Stats {
    puts: BTreeMap<String, u64>,
    responses: BTreeMap<String, Vec<u16>>,
    /// Episode requests, oldest first, numbered consecutively from `first_seq`.
    requests: VecDeque<Logged>,
    first_seq: u64,
}

/// One episode request, for tests that check timing (retry schedules, stalls).
struct Logged {
    key: String,
    /// Unix microseconds when the request head had been read.
    at_us: u64,
    /// When the request was over (answered, or given up); `None` while in progress.
    end_us: Option<u64>,
    status: Option<u16>,
    bytes: u64,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Stats {
    /// Log the start of a request; returns its number for `finish`.
    fn begin(&mut self, key: &str) -> u64 {
        self.requests.push_back(Logged {
            key: key.to_owned(),
            at_us: unix_us(),
            end_us: None,
            status: None,
            bytes: 0,
        });
        if self.requests.len() > REQUEST_LOG_MAX {
            self.requests.pop_front();
            self.first_seq += 1;
        }
        self.first_seq + self.requests.len() as u64 - 1
    }

    /// Complete a logged request (a no-op if it has been rotated out or reset).
    fn finish(&mut self, seq: u64, status: Option<u16>, bytes: u64) {
        let Some(i) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(r) = usize::try_from(i)
            .ok()
            .and_then(|i| self.requests.get_mut(i))
        {
            r.end_us = Some(unix_us());
            r.status = status;
            r.bytes = bytes;
        }
    }

    /// Forget everything, but keep numbering where it was so that requests still
    /// in progress do not complete someone else's entry.
    fn reset(&mut self) {
        let next = self.first_seq + self.requests.len() as u64;
        *self = Stats {
            first_seq: next,
            ..Stats::default()
        };
    }

    fn requests_json(&self) -> Vec<serde_json::Value> {
        self.requests
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "at_us": r.at_us,
                    "end_us": r.end_us,
                    "status": r.status,
                    "bytes": r.bytes,
                })
            })
            .collect()
    }
}

pub struct Shared {
    pub store: PathBuf,
    /// SHA-256 of the expected bearer token, if one is configured.
    pub token_hash: Option<[u8; 32]>,
    pub control: bool,
    pub read_timeout: Duration,
    pub rules: Mutex<Rules>,
    pub stats: Mutex<Stats>,
    pub in_progress: Mutex<HashSet<String>>,
    pub stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do with the connection after a request.
#[derive(PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// Body not (fully) consumed: half-close and drain briefly.
    Graceful,
}

struct Outcome {
    /// `None` if no response was sent (client vanished, stall).
    status: Option<u16>,
    /// Body bytes read.
    bytes: u64,
    note: String,
    after: After,
}

impl Outcome {
    fn new(status: Option<u16>, bytes: u64, after: After) -> Self {
        Outcome {
            status,
            bytes,
            note: String::new(),
            after,
        }
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Serve requests on one connection until it closes.
pub fn serve(mut conn: Conn, shared: &Shared) {
    loop {
        conn.set_read_timeout(shared.read_timeout);
        let req = match http::read_head(&mut conn.r) {
            Ok(r) => r,
            Err(HeadError::Closed) | Err(HeadError::Io(_)) => return,
            Err(HeadError::Bad(why)) => {
                let _ = conn.send(&Response::text(400, why).serialize(true));
                eprintln!("{} - - 400 0 0ms {why}", conn.peer);
                conn.graceful_close();
                return;
            }
            Err(HeadError::TooLarge) => {
                let _ = conn.send(&Response::text(431, "request head too large").serialize(true));
                eprintln!("{} - - 431 0 0ms", conn.peer);
                conn.graceful_close();
                return;
            }
        };
        let start = Instant::now();
        let out = handle(&mut conn, &req, shared);
        let status = out.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        eprintln!(
            "{} {} {} {} {} {}ms{}{}",
            conn.peer,
            req.method,
            req.path.replace(|c: char| c.is_control(), "?"),
            status,
            out.bytes,
            start.elapsed().as_millis(),
            if out.note.is_empty() { "" } else { " " },
            out.note
        );
        match out.after {
            After::KeepAlive if !req.wants_close() => continue,
            After::KeepAlive | After::Close => return,
            After::Graceful => {
                conn.graceful_close();
                return;
            }
        }
    }
}

/// Send `resp`. `after` says whether the request body has been fully consumed.
fn respond(conn: &mut Conn, req: &Request, resp: Response, bytes: u64, after: After) -> Outcome {
    let close = after != After::KeepAlive || req.wants_close();
    let status = resp.status;
    if conn.send(&resp.serialize(close)).is_err() {
        return Outcome::new(Some(status), bytes, After::Close).note("client gone before response");
    }
    Outcome::new(Some(status), bytes, after)
}

/// Answer without needing the body: drain a small body and keep the connection alive,
/// otherwise answer early and close gracefully.
fn respond_skip_body(conn: &mut Conn, req: &Request, resp: Response) -> Outcome {
    let len = match (req.content_length(), req.has_transfer_encoding()) {
        (Ok(Some(n)), false) => n,
        (Ok(None), false) => 0,
        _ => return respond(conn, req, resp, 0, After::Graceful),
    };
    if len == 0 {
        return respond(conn, req, resp, 0, After::KeepAlive);
    }
    if len <= DRAIN_LIMIT && !req.expects_continue() {
        let mut sink = io::sink();
        return match io::copy(&mut (&mut conn.r).take(len), &mut sink) {
            Ok(n) if n == len => respond(conn, req, resp, n, After::KeepAlive),
            Ok(n) => Outcome::new(None, n, After::Close).note("client disconnected"),
            Err(_) => Outcome::new(None, 0, After::Close).note("read error"),
        };
    }
    respond(conn, req, resp, 0, After::Graceful)
}

fn handle(conn: &mut Conn, req: &Request, shared: &Shared) -> Outcome {
    let segs: Vec<&str> = req
        .path
        .strip_prefix('/')
        .unwrap_or(&req.path)
        .split('/')
        .collect();
    match segs.as_slice() {
        ["episodes", host, episode] => {
            if req.method != "PUT" {
                let resp = Response::text(405, "method not allowed").with_header("Allow", "PUT");
                return respond_skip_body(conn, req, resp);
            }
            put_episode(conn, req, shared, host, episode)
        }
        ["_control", ..] if shared.control => control(conn, req, shared, &segs[1..]),
        ["_sink", ..] if req.method == "PUT" => sink(conn, req),
        _ => respond_skip_body(conn, req, Response::text(404, "not found")),
    }
}

/// `PUT /_sink/...`: read and discard any body, fixed-length or chunked,
/// and answer 201. A loopback sink for benchmark baselines such as
/// `tar -cf - | gzip -6 | curl -T - URL/_sink/x`, which send no digest.
fn sink(conn: &mut Conn, req: &Request) -> Outcome {
    if req.expects_continue() && conn.send(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return Outcome::new(None, 0, After::Close).note("client vanished");
    }
    let read = if req.has_transfer_encoding() {
        read_chunked(conn)
    } else {
        match req.content_length() {
            Ok(len) => {
                let len = len.unwrap_or(0);
                io::copy(&mut (&mut conn.r).take(len), &mut io::sink()).and_then(|n| {
                    if n == len {
                        Ok(n)
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    }
                })
            }
            Err(why) => return respond(conn, req, Response::text(400, why), 0, After::Graceful),
        }
    };
    match read {
        Ok(n) => respond(
            conn,
            req,
            Response::text(201, format!("discarded {n} bytes")),
            n,
            After::KeepAlive,
        ),
        Err(_) => Outcome::new(None, 0, After::Close).note("client disconnected"),
    }
}

/// Read a chunked body (RFC 9112 section 7.1) into the void.
fn read_chunked(conn: &mut Conn) -> io::Result<u64> {
    use std::io::BufRead;
    let mut total = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        conn.r.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if conn.r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(total);
                }
            }
        }
        let n = io::copy(&mut (&mut conn.r).take(size), &mut io::sink())?;
        if n != size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        line.clear();
        conn.r.read_line(&mut line)?; // CRLF after the chunk
    }
}

/// Percent-decode and validate one id segment.
fn decode_id(raw: &str) -> Result<String, &'static str> {
    let id = http::percent_decode(raw).ok_or("invalid percent-encoding in path")?;
    if id.is_empty() {
        return Err("empty id in path");
    }
    if id.len() > 200 {
        return Err("id too long");
    }
    if id.starts_with('.') {
        return Err("id must not start with '.'");
    }
    if id.contains(['/', '\\']) {
        return Err("id must not contain '/' or '\\'");
    }
    if id.chars().any(char::is_control) {
        return Err("id must not contain control characters");
    }
    Ok(id)
}

/// Constant-time comparison of the presented token against the configured one
/// (both hashed first, so the length is not leaked either).
fn token_ok(expected: &[u8; 32], presented: &str) -> bool {
    let got = sha256(presented.as_bytes());
    let diff = expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

fn check_auth(req: &Request, shared: &Shared) -> Option<Response> {
    let expected = shared.token_hash.as_ref()?;
    let unauthorized =
        |why: &str| Some(Response::text(401, why).with_header("WWW-Authenticate", "Bearer"));
    let Some(value) = req.header("authorization") else {
        return unauthorized("missing bearer token");
    };
    let token = match value.split_once(' ') {
        Some((scheme, tok)) if scheme.eq_ignore_ascii_case("bearer") => tok.trim(),
        _ => return unauthorized("authorization is not a bearer token"),
    };
    if token_ok(expected, token) {
        None
    } else {
        unauthorized("invalid bearer token")
    }
}

/// Parse `Content-Digest` (RFC 9530 dictionary) and return the sha-256 value.
fn parse_content_digest(req: &Request) -> Result<[u8; 32], &'static str> {
    let value = req
        .header("content-digest")
        .ok_or("missing content-digest")?;
    for member in value.split(',') {
        let member = member.trim();
        let Some((key, val)) = member.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        // Drop any parameters (";...") after the byte sequence.
        let val = val.split(';').next().unwrap_or_default().trim();
        let b64 = val
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .ok_or("malformed content-digest (expected sha-256=:BASE64:)")?;
        let bytes = B64
            .decode(b64)
            .map_err(|_| "malformed content-digest (bad base64)")?;
        return bytes
            .try_into()
            .map_err(|_| "malformed content-digest (sha-256 must be 32 bytes)");
    }
    Err("content-digest has no sha-256 member")
}

fn injected_response(code: u16, retry_after: Option<u64>, host: &str, episode: &str) -> Response {
    let body = match code {
        412 => format!("412 not in recording window for host {host}"),
        409 => "already stored".to_owned(),
        _ => format!(
            "{code} {} (injected for {host}/{episode})",
            http::reason(code).to_lowercase()
        ),
    };
    let mut resp = Response::text(code, body);
    if let Some(s) = retry_after {
        resp = resp.with_header("Retry-After", s.to_string());
    }
    if code == 401 {
        resp = resp.with_header("WWW-Authenticate", "Bearer");
    }
    resp
}

/// Streaming SHA-256 of upload bodies (aws-lc's assembly implementation,
/// the one rustls already links: much faster than portable code on CPUs
/// without SHA extensions).
struct BodyHasher(aws_lc_rs::digest::Context);

impl BodyHasher {
    fn new() -> Self {
        BodyHasher(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> [u8; 32] {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.0.finish().as_ref());
        d
    }
}

/// SHA-256 of a short value (tokens).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = BodyHasher::new();
    h.update(data);
    h.finish()
}

/// Releases the in-progress claim on drop.
struct InProgress<'a> {
    shared: &'a Shared,
    key: String,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        lock(&self.shared.in_progress).remove(&self.key);
    }
}

/// Removes the partial file on drop unless disarmed.
struct Partial {
    path: PathBuf,
    armed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads exactly `len` body bytes, optionally throttled, passing chunks to `sink`.
/// Returns bytes read and whether the body was complete.
fn read_body(
    conn: &mut Conn,
    len: u64,
    rate: Option<u64>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> (u64, Result<(), BodyError>) {
    let mut buf = vec![0u8; BUF_SIZE];
    // Keep throttled reads small so the rate is smooth (~10 chunks per second).
    let chunk = rate.map_or(BUF_SIZE, |r| (r / 10).clamp(1, BUF_SIZE as u64) as usize);
    let start = Instant::now();
    let mut done: u64 = 0;
    while done < len {
        let want = chunk.min((len - done).min(usize::MAX as u64) as usize);
        let n = match conn.r.read(&mut buf[..want]) {
            Ok(0) => return (done, Err(BodyError::Disconnected)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (done, Err(BodyError::Read(e))),
        };
        done += n as u64;
        if let Err(e) = sink(&buf[..n]) {
            return (done, Err(BodyError::Sink(e)));
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(done as f64 / r as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    (done, Ok(()))
}

enum BodyError {
    Disconnected,
    Read(io::Error),
    Sink(io::Error),
}

fn send_continue(conn: &mut Conn, req: &Request) -> io::Result<()> {
    if req.expects_continue() {
        conn.send(http::CONTINUE)?;
    }
    Ok(())
}

fn put_episode(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    raw_host: &str,
    raw_episode: &str,
) -> Outcome {
    let (host, episode) = match (decode_id(raw_host), decode_id(raw_episode)) {
        (Ok(h), Ok(e)) => (h, e),
        (Err(why), _) | (_, Err(why)) => {
            return respond_skip_body(conn, req, Response::text(400, why));
        }
    };
    let key = format!("{host}/{episode}");
    let seq = {
        let mut stats = lock(&shared.stats);
        *stats.puts.entry(key.clone()).or_default() += 1;
        stats.begin(&key)
    };
    let out = put_episode_inner(conn, req, shared, &host, &episode, &key);
    let mut stats = lock(&shared.stats);
    stats.finish(seq, out.status, out.bytes);
    if let Some(status) = out.status {
        stats.responses.entry(key).or_default().push(status);
    }
    drop(stats);
    out
}

fn put_episode_inner(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    host: &str,
    episode: &str,
    key: &str,
) -> Outcome {
    if let Some(resp) = check_auth(req, shared) {
        return respond_skip_body(conn, req, resp);
    }
    if req.has_transfer_encoding() {
        return respond(
            conn,
            req,
            Response::text(501, "transfer-encoding not supported; send content-length"),
            0,
            After::Graceful,
        );
    }
    let len = match req.content_length() {
        Ok(Some(n)) => n,
        Ok(None) => {
            return respond(
                conn,
                req,
                Response::text(411, "content-length required"),
                0,
                After::Graceful,
            );
        }
        Err(why) => return respond(conn, req, Response::text(400, why), 0, After::Graceful),
    };

    let action = lock(&shared.rules).take(host, episode);
    let rate = match action {
        Action::Normal => None,
        Action::Slow(r) => Some(r),
        Action::CloseEarly { code, retry_after } => {
            let resp = injected_response(code, retry_after, host, episode);
            return respond(conn, req, resp, 0, After::Graceful).note("injected close-early");
        }
        Action::Status { code, retry_after } => {
            if send_continue(conn, req).is_err() {
                return Outcome::new(None, 0, After::Close).note("client gone");
            }
            let (n, res) = read_body(conn, len, None, |_| Ok(()));
            if res.is_err() {
                return Outcome::new(None, n, After::Close)
                    .note("client disconnected (injected status not sent)");
            }
            let resp = injected_response(code, retry_after, host, episode);
            return respond(conn, req, resp, n, After::KeepAlive).note("injected status");
        }
        Action::Stall => {
            if send_continue(conn, req).is_err() {
                return Outcome::new(None, 0, After::Close).note("client gone");
            }
            let (n, _) = read_body(conn, len.min(STALL_READ), None, |_| Ok(()));
            conn.wait_peer_gone(&shared.stop, STALL_MAX);
            return Outcome::new(None, n, After::Close).note("injected stall; client gave up");
        }
    };
    let mut out = store(conn, req, shared, host, episode, key, len, rate);
    if rate.is_some() {
        out.note = format!("slow {}", out.note).trim_end().to_owned();
    }
    out
}

/// 409 with the stored object's digest (`Repr-Digest`, RFC 9530), so a
/// client can tell a repeat of the same upload from an id reused for
/// different content.
fn already_stored(path: &std::path::Path) -> Response {
    let resp = Response::text(409, "already stored");
    let Ok(mut file) = File::open(path) else {
        return resp;
    };
    let mut hasher = BodyHasher::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return resp,
        }
    }
    let digest = B64.encode(hasher.finish());
    resp.with_header("Repr-Digest", format!("sha-256=:{digest}:"))
}

#[allow(clippy::too_many_arguments)]
fn store(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    host: &str,
    episode: &str,
    key: &str,
    len: u64,
    rate: Option<u64>,
) -> Outcome {
    let dir = shared.store.join(host);
    let final_path = dir.join(format!("{episode}.tar.gz"));
    let partial_path = dir.join(format!("{episode}.tar.gz.partial"));

    match final_path.try_exists() {
        Ok(true) => return respond_skip_body(conn, req, already_stored(&final_path)),
        Ok(false) => {}
        Err(e) => return server_error(conn, req, "checking store", &e),
    }
    let want = match parse_content_digest(req) {
        Ok(d) => d,
        Err(why) => return respond_skip_body(conn, req, Response::text(400, why)),
    };
    if !lock(&shared.in_progress).insert(key.to_owned()) {
        let resp = Response::text(503, "upload of this episode already in progress")
            .with_header("Retry-After", "1");
        return respond_skip_body(conn, req, resp);
    }
    let _claim = InProgress {
        shared,
        key: key.to_owned(),
    };
    // Re-check under the claim: another upload may have finished in between.
    if final_path.exists() {
        return respond_skip_body(conn, req, already_stored(&final_path));
    }

    if let Err(e) = fs::create_dir_all(&dir) {
        return server_error(conn, req, "creating host directory", &e);
    }
    let mut file = match File::create(&partial_path) {
        Ok(f) => f,
        Err(e) => return server_error(conn, req, "creating partial file", &e),
    };
    let mut partial = Partial {
        path: partial_path,
        armed: true,
    };
    if send_continue(conn, req).is_err() {
        return Outcome::new(None, 0, After::Close).note("client gone");
    }

    // Hash and write on a second thread, so reading the socket, SHA-256 and
    // the disk overlap: SHA-256 alone runs at a few hundred MB/s on CPUs
    // without SHA extensions, and the receiver must not be what a
    // benchmark of the shipper measures.
    let (n, res, got, file) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let store = scope.spawn(move || {
            let mut hasher = BodyHasher::new();
            let mut written = Ok(());
            for chunk in rx {
                hasher.update(&chunk);
                if written.is_ok() {
                    written = file.write_all(&chunk);
                }
            }
            (hasher.finish(), written.map(|()| file))
        });
        let (n, mut res) = read_body(conn, len, rate, |chunk| {
            tx.send(chunk.to_vec())
                .map_err(|_| io::Error::other("store thread stopped"))
        });
        drop(tx);
        let (got, file) = match store.join() {
            Ok((got, written)) => (got, written),
            Err(_) => ([0; 32], Err(io::Error::other("store thread panicked"))),
        };
        if res.is_ok()
            && let Err(e) = &file
        {
            res = Err(BodyError::Sink(io::Error::new(e.kind(), e.to_string())));
        }
        (n, res, got, file)
    });
    match res {
        Ok(()) => {}
        Err(BodyError::Disconnected) => {
            return Outcome::new(None, n, After::Close)
                .note(format!("client disconnected after {n} of {len} bytes"));
        }
        Err(BodyError::Read(e)) => {
            return Outcome::new(None, n, After::Close)
                .note(format!("read error after {n} of {len} bytes: {e}"));
        }
        Err(BodyError::Sink(e)) => {
            eprintln!("error writing {}: {e}", partial.path.display());
            let resp = Response::text(500, "write error in receiver store");
            return respond(conn, req, resp, n, After::Graceful);
        }
    }
    let Ok(file) = file else {
        return server_error_body_read(conn, req, n, "write", &io::Error::other("store failed"));
    };
    if got != want {
        return respond(
            conn,
            req,
            Response::text(400, "content-digest mismatch"),
            n,
            After::KeepAlive,
        )
        .note(format!(
            "expected {} got {}",
            B64.encode(want),
            B64.encode(got)
        ));
    }
    if let Err(e) = file.sync_all() {
        return server_error_body_read(conn, req, n, "fsync", &e);
    }
    drop(file);
    if let Err(e) = fs::rename(&partial.path, &final_path) {
        return server_error_body_read(conn, req, n, "rename", &e);
    }
    partial.armed = false;
    // Make the rename durable.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    let resp = Response::text(201, "stored").with_header("Location", format!("/episodes/{key}"));
    respond(conn, req, resp, n, After::KeepAlive)
}

fn server_error(conn: &mut Conn, req: &Request, what: &str, e: &io::Error) -> Outcome {
    eprintln!("store error ({what}): {e}");
    respond_skip_body(
        conn,
        req,
        Response::text(500, format!("receiver store error: {what}")),
    )
}

fn server_error_body_read(
    conn: &mut Conn,
    req: &Request,
    n: u64,
    what: &str,
    e: &io::Error,
) -> Outcome {
    eprintln!("store error ({what}): {e}");
    respond(
        conn,
        req,
        Response::text(500, format!("receiver store error: {what}")),
        n,
        After::KeepAlive,
    )
}

/// All `<host>/<episode>` with a complete `.tar.gz` in the store.
fn list_stored(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(hosts) = fs::read_dir(store) else {
        return out;
    };
    for h in hosts.flatten() {
        let Ok(files) = fs::read_dir(h.path()) else {
            continue;
        };
        let host = h.file_name().to_string_lossy().into_owned();
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(ep) = name.strip_suffix(".tar.gz") {
                out.push(format!("{host}/{ep}"));
            }
        }
    }
    out.sort();
    out
}

fn read_small_body(conn: &mut Conn, req: &Request) -> Result<Vec<u8>, Response> {
    let len = match req.content_length() {
        Ok(Some(n)) => n,
        Ok(None) if !req.has_transfer_encoding() => 0,
        _ => return Err(Response::text(411, "content-length required")),
    };
    if len > MAX_CONTROL_BODY {
        return Err(Response::text(413, "control body too large"));
    }
    if send_continue(conn, req).is_err() {
        return Err(Response::text(400, "client gone"));
    }
    let mut body = Vec::with_capacity(len as usize);
    match (&mut conn.r).take(len).read_to_end(&mut body) {
        Ok(n) if n as u64 == len => Ok(body),
        _ => Err(Response::text(400, "short body")),
    }
}

fn control(conn: &mut Conn, req: &Request, shared: &Shared, segs: &[&str]) -> Outcome {
    let m = req.method.as_str();
    let resp = match (m, segs) {
        ("GET", ["health"]) => Response::text(200, "ok"),
        ("GET", ["stats"]) => {
            let stats = lock(&shared.stats);
            Response::json(
                200,
                &json!({
                    "puts": stats.puts,
                    "stored": list_stored(&shared.store),
                    "responses": stats.responses,
                    "requests": stats.requests_json(),
                }),
            )
        }
        ("DELETE", ["stats"]) => {
            lock(&shared.stats).reset();
            Response::text(200, "stats reset")
        }
        ("GET", ["behave"]) => Response::json(200, &json!(lock(&shared.rules).list())),
        ("PUT", ["behave", raw_id]) => {
            let Some(id) = http::percent_decode(raw_id).filter(|s| !s.is_empty()) else {
                return respond_skip_body(conn, req, Response::text(400, "bad id"));
            };
            let body = match read_small_body(conn, req) {
                Ok(b) => b,
                Err(resp) => return respond(conn, req, resp, 0, After::Graceful),
            };
            let n = body.len() as u64;
            let spec = String::from_utf8_lossy(&body);
            let resp = match behave::parse_rule(&spec) {
                Ok(rule) => {
                    let text = format!("{id}={rule}");
                    lock(&shared.rules).set(id, rule);
                    Response::text(200, text)
                }
                Err(e) => Response::text(400, format!("{e:#}")),
            };
            return respond(conn, req, resp, n, After::KeepAlive);
        }
        ("DELETE", ["behave", raw_id]) => {
            let id = http::percent_decode(raw_id).unwrap_or_default();
            if lock(&shared.rules).clear(&id) {
                Response::text(200, "cleared")
            } else {
                Response::text(404, "no such rule")
            }
        }
        (_, ["health"] | ["stats"] | ["behave"] | ["behave", _]) => {
            Response::text(405, "method not allowed")
        }
        _ => Response::text(404, "not found"),
    };
    respond_skip_body(conn, req, resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(decode_id("host-1").as_deref(), Ok("host-1"));
        assert_eq!(decode_id("ep%20one").as_deref(), Ok("ep one"));
        for bad in [
            "", ".", "..", ".hidden", "a%2Fb", "%2e%2e", "a%0Ab", "a%5Cb", "%ff",
        ] {
            assert!(decode_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn body_hasher_matches_known_vector() {
        let mut h = BodyHasher::new();
        h.update(b"a");
        h.update(b"bc");
        let hex: String = h.finish().iter().map(|b| format!("{b:02x}")).collect();
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn request_log_is_bounded_and_numbered() {
        let mut stats = Stats::default();
        let first = stats.begin("h/a");
        stats.finish(first, Some(503), 10);
        let log = stats.requests_json();
        assert_eq!(log[0]["key"], "h/a");
        assert_eq!(log[0]["status"], 503);
        assert_eq!(log[0]["bytes"], 10);
        assert!(log[0]["end_us"].as_u64() >= log[0]["at_us"].as_u64());
        let mut last = first;
        for _ in 0..REQUEST_LOG_MAX {
            last = stats.begin("h/b");
        }
        assert_eq!(stats.requests.len(), REQUEST_LOG_MAX);
        assert_eq!(stats.requests[0].key, "h/b");
        // The first one was rotated out: finishing it changes nothing.
        stats.finish(first, Some(201), 1);
        assert!(stats.requests.iter().all(|r| r.status.is_none()));
        stats.finish(last, Some(201), 5);
        let back = stats.requests.back().expect("last");
        assert_eq!((back.status, back.bytes), (Some(201), 5));
        assert!(back.end_us.is_some());
        assert_eq!(stats.requests_json()[0]["end_us"], serde_json::Value::Null);

        // A reset while `in_flight` is still going: it must not complete a newer entry.
        let in_flight = stats.begin("h/c");
        stats.reset();
        assert!(stats.requests.is_empty());
        let newer = stats.begin("h/d");
        stats.finish(in_flight, Some(201), 1);
        assert_eq!(stats.requests[0].status, None);
        stats.finish(newer, Some(409), 0);
        assert_eq!(stats.requests[0].status, Some(409));
    }

    #[test]
    fn token_compare() {
        let exp = sha256(b"s3cret");
        assert!(token_ok(&exp, "s3cret"));
        assert!(!token_ok(&exp, "s3cres"));
        assert!(!token_ok(&exp, ""));
    }
}
