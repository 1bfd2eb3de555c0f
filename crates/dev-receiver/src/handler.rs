//! Request routing: the per-connection request loop, the router, the
//! response helpers every endpoint uses, and the state the handlers share.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::behave::Rules;
use crate::body::read_chunked;
use crate::conn::Conn;
use crate::control::control;
use crate::head::head_episode;
use crate::http::{self, HeadError, Request, Response};
use crate::stats::Stats;
use crate::upload::put_episode;

/// Bodies up to this size are drained (keeping the connection alive) when we answer
/// without needing them; larger ones get an early answer and a graceful close.
const DRAIN_LIMIT: u64 = 1024 * 1024;

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

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do with the connection after a request.
#[derive(PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
    /// Body not (fully) consumed: half-close and drain briefly.
    Graceful,
}

pub struct Outcome {
    /// `None` if no response was sent (client vanished, stall).
    pub status: Option<u16>,
    /// Body bytes read.
    pub bytes: u64,
    pub note: String,
    pub after: After,
}

impl Outcome {
    pub fn new(status: Option<u16>, bytes: u64, after: After) -> Self {
        Outcome {
            status,
            bytes,
            note: String::new(),
            after,
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
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
pub fn respond(
    conn: &mut Conn,
    req: &Request,
    resp: Response,
    bytes: u64,
    after: After,
) -> Outcome {
    let close = after != After::KeepAlive || req.wants_close();
    // Whatever answers a HEAD sends its head only.
    let resp = if req.method == "HEAD" {
        resp.for_head(None, None)
    } else {
        resp
    };
    let status = resp.status;
    if conn.send(&resp.serialize(close)).is_err() {
        return Outcome::new(Some(status), bytes, After::Close).note("client gone before response");
    }
    Outcome::new(Some(status), bytes, after)
}

/// Answer without needing the body: drain a small body and keep the connection alive,
/// otherwise answer early and close gracefully.
pub fn respond_skip_body(conn: &mut Conn, req: &Request, resp: Response) -> Outcome {
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
        ["episodes", host, episode] => match req.method.as_str() {
            "PUT" => put_episode(conn, req, shared, host, episode),
            "HEAD" => head_episode(conn, req, shared, host, episode),
            _ => {
                let resp =
                    Response::text(405, "method not allowed").with_header("Allow", "PUT, HEAD");
                respond_skip_body(conn, req, resp)
            }
        },
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
