//! `PUT /episodes/{host_id}/{episode_id}`: apply any injected misbehaviour,
//! otherwise verify the body's digest and store it atomically. (`HEAD` of
//! the same URL is in `head.rs`.)

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::auth::check_auth;
use crate::behave::Action;
use crate::body::{BUF_SIZE, BodyError, read_body, send_continue};
use crate::conn::Conn;
use crate::digest::{BodyHasher, parse_content_digest};
use crate::handler::{After, Outcome, Shared, lock, respond, respond_skip_body};
use crate::http::{self, Request, Response};

/// How much of the body the `stall` behaviour reads before it stops reading.
const STALL_READ: u64 = 64 * 1024;
const STALL_MAX: Duration = Duration::from_secs(3600);

/// Percent-decode and validate one id segment.
/// `(host, episode)` from the two raw path segments of an episode URL.
pub fn decode_key(raw_host: &str, raw_episode: &str) -> Result<(String, String), &'static str> {
    Ok((decode_id(raw_host)?, decode_id(raw_episode)?))
}

pub fn decode_id(raw: &str) -> Result<String, &'static str> {
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

pub fn injected_response(
    code: u16,
    retry_after: Option<u64>,
    host: &str,
    episode: &str,
) -> Response {
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

pub fn put_episode(
    conn: &mut Conn,
    req: &Request,
    shared: &Shared,
    raw_host: &str,
    raw_episode: &str,
) -> Outcome {
    let (host, episode) = match decode_key(raw_host, raw_episode) {
        Ok(key) => key,
        Err(why) => return respond_skip_body(conn, req, Response::text(400, why)),
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
    // A proxy in front of the receiver refuses before anything else.
    let refusal = lock(&shared.rules).take_refusal(host, episode);
    if let Some(Action::Refuse { code, retry_after }) = refusal {
        let resp = injected_response(code, retry_after, host, episode);
        return respond(conn, req, resp, 0, After::Graceful).note("injected refusal");
    }
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
        Action::CloseEarly { code, retry_after } | Action::Refuse { code, retry_after } => {
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
    match repr_digest(path) {
        Some(digest) => resp.with_header("Repr-Digest", digest),
        None => resp,
    }
}

/// `Repr-Digest` of a stored archive: `sha-256=:<base64>:` (RFC 9530).
pub fn repr_digest(path: &std::path::Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut hasher = BodyHasher::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(format!("sha-256=:{}:", B64.encode(hasher.finish())))
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
}
