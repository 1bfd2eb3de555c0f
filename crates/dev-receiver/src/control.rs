//! The unauthenticated `/_control/*` endpoints that tests, the demo and the
//! benchmarks use to steer the receiver and read what it saw.

use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::json;

use crate::behave;
use crate::body::send_continue;
use crate::conn::Conn;
use crate::handler::{After, Outcome, Shared, lock, respond, respond_skip_body};
use crate::http::{self, Request, Response};

const MAX_CONTROL_BODY: u64 = 4096;

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

pub fn control(conn: &mut Conn, req: &Request, shared: &Shared, segs: &[&str]) -> Outcome {
    let m = req.method.as_str();
    let resp = match (m, segs) {
        ("GET", ["health"]) => Response::text(200, "ok"),
        ("GET", ["stats"]) => {
            let stats = lock(&shared.stats);
            Response::json(
                200,
                &json!({
                    "puts": stats.puts,
                    "heads": stats.heads,
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
