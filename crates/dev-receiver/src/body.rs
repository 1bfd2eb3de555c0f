//! Reading request bodies: exactly `len` bytes (optionally throttled), a
//! chunked body into the void, and the `100 Continue` interim answer.

use std::io::{self, BufRead, Read};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::http::{self, Request};

/// Body read buffer; also the unit of file writes.
pub const BUF_SIZE: usize = 256 * 1024;

/// Read a chunked body (RFC 9112 section 7.1) into the void.
pub fn read_chunked(conn: &mut Conn) -> io::Result<u64> {
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

/// Reads exactly `len` body bytes, optionally throttled, passing chunks to `sink`.
/// Returns bytes read and whether the body was complete.
pub fn read_body(
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

pub enum BodyError {
    Disconnected,
    Read(io::Error),
    Sink(io::Error),
}

pub fn send_continue(conn: &mut Conn, req: &Request) -> io::Result<()> {
    if req.expects_continue() {
        conn.send(http::CONTINUE)?;
    }
    Ok(())
}
