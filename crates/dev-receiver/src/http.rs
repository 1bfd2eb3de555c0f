//! Minimal HTTP/1.1 request-head parsing and response serialisation.

use std::io::{self, BufRead, Read};

/// Upper bound for the whole request head (request line + headers).
const MAX_HEAD: u64 = 64 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Raw (still percent-encoded) path, without the query string.
    pub path: String,
    /// HTTP/1.0 (false) or HTTP/1.1 (true).
    pub http11: bool,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum HeadError {
    /// Clean EOF before the first byte of a request (idle keep-alive close).
    Closed,
    Io(io::Error),
    Bad(&'static str),
    TooLarge,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Ok(None)` if absent; error if malformed or contradictory.
    pub fn content_length(&self) -> Result<Option<u64>, &'static str> {
        let mut found: Option<u64> = None;
        for v in self.header_values("content-length") {
            for part in v.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("malformed content-length");
                }
                let n: u64 = part.parse().map_err(|_| "content-length too large")?;
                if found.is_some_and(|f| f != n) {
                    return Err("conflicting content-length headers");
                }
                found = Some(n);
            }
        }
        Ok(found)
    }

    pub fn has_transfer_encoding(&self) -> bool {
        self.header("transfer-encoding").is_some()
    }

    /// Whether the connection must be closed after this exchange.
    pub fn wants_close(&self) -> bool {
        let conn_tokens = || {
            self.header_values("connection")
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
        };
        if self.http11 {
            conn_tokens().any(|t| t == "close")
        } else {
            !conn_tokens().any(|t| t == "keep-alive")
        }
    }

    pub fn expects_continue(&self) -> bool {
        self.http11
            && self
                .header("expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }
}

/// Read one line (terminated by LF) within the remaining head budget.
fn read_line<R: BufRead>(r: &mut R, budget: &mut u64, line: &mut Vec<u8>) -> Result<(), HeadError> {
    line.clear();
    let n = r
        .by_ref()
        .take(*budget)
        .read_until(b'\n', line)
        .map_err(HeadError::Io)?;
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        if *budget == 0 {
            return Err(HeadError::TooLarge);
        }
        return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(())
}

pub fn read_head<R: BufRead>(r: &mut R) -> Result<Request, HeadError> {
    let mut budget = MAX_HEAD;
    let mut line = Vec::with_capacity(256);

    // Request line; tolerate (a few) leading empty lines per RFC 9112 2.2.
    let mut first = true;
    loop {
        match read_line(r, &mut budget, &mut line) {
            Err(HeadError::Io(e)) if first && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(HeadError::Closed);
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        first = false;
        if !line.is_empty() {
            break;
        }
        if budget < MAX_HEAD - 8 {
            return Err(HeadError::Bad("too many empty lines"));
        }
    }
    let request_line =
        std::str::from_utf8(&line).map_err(|_| HeadError::Bad("non-utf8 request line"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Bad("malformed method"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HeadError::Bad("unsupported HTTP version")),
    };
    if !target.starts_with('/') {
        return Err(HeadError::Bad("request target must be an absolute path"));
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    let method = method.to_owned();

    let mut headers = Vec::new();
    loop {
        read_line(r, &mut budget, &mut line)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HeadError::Bad("obsolete header line folding"));
        }
        let text = std::str::from_utf8(&line).map_err(|_| HeadError::Bad("non-utf8 header"))?;
        let Some((name, value)) = text.split_once(':') else {
            return Err(HeadError::Bad("malformed header"));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HeadError::Bad("malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method,
        path,
        http11,
        headers,
    })
}

/// Percent-decode one path segment. Errors on bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        423 => "Locked",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(&'static str, String)>,
    content_type: &'static str,
    body: Vec<u8>,
    /// An answer to `HEAD`: the head only, with this `Content-Length`.
    head_only: Option<u64>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            head_only: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
            head_only: None,
        }
    }

    /// The answer to a `HEAD`: no body is sent, and `Content-Length` is
    /// `length` (what a `GET` would carry) or else this body's.
    pub fn for_head(mut self, length: Option<u64>, content_type: Option<&'static str>) -> Self {
        let length = length.or(self.head_only);
        self.head_only = Some(length.unwrap_or(self.body.len() as u64));
        if let Some(t) = content_type {
            self.content_type = t;
        }
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn serialize(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: cis490-dev-receiver\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.head_only.unwrap_or(self.body.len() as u64)
        );
        for (n, v) in &self.headers {
            head.push_str(n);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        out.extend_from_slice(head.as_bytes());
        if self.head_only.is_none() {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, HeadError> {
        read_head(&mut io::BufReader::new(s.as_bytes()))
    }

    #[test]
    fn parses_put() {
        let r = parse("PUT /episodes/h/e?x=1 HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            .expect("parse");
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/episodes/h/e");
        assert_eq!(r.content_length(), Ok(Some(5)));
        assert!(r.expects_continue());
        assert!(!r.wants_close());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse(""), Err(HeadError::Closed)));
        assert!(matches!(
            parse("GET / HTTP/2\r\n\r\n"),
            Err(HeadError::Bad(_))
        ));
        assert!(matches!(parse("GET /\r\n\r\n"), Err(HeadError::Bad(_))));
        let r = parse("PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .expect("parse");
        assert!(r.content_length().is_err());
    }

    #[test]
    fn head_answers_carry_no_body() {
        let get = Response::text(404, "not found").serialize(false);
        let head = Response::text(404, "not found")
            .for_head(None, None)
            .serialize(false);
        let text = String::from_utf8(head).expect("utf-8");
        assert!(text.contains("Content-Length: 9\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(get.len(), text.len() + 9);
        let stored = Response::text(200, "")
            .for_head(Some(1234), Some("application/gzip"))
            .serialize(false);
        let text = String::from_utf8(stored).expect("utf-8");
        assert!(text.contains("Content-Length: 1234\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: application/gzip\r\n"),
            "{text}"
        );
    }

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%zz"), None);
    }
}
