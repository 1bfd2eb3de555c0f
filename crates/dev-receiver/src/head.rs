//! `HEAD /episodes/{host_id}/{episode_id}`: whether the episode is stored,
//! without sending it. `200` with its size and `Repr-Digest` when stored,
//! `404` when not. A shipper asks this to confirm a refusal: a proxy in
//! front of the receiver that refused the upload refuses this too (the
//! `refuse:` behaviour), the receiver itself does not.

use crate::auth::check_auth;
use crate::behave::Action;
use crate::conn::Conn;
use crate::handler::{After, Outcome, Shared, lock, respond, respond_skip_body};
use crate::http::{Request, Response};
use crate::upload::{decode_key, injected_response, repr_digest};

pub fn head_episode(
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
    *lock(&shared.stats).heads.entry(key).or_default() += 1;
    let refusal = lock(&shared.rules).take_refusal(&host, &episode);
    if let Some(Action::Refuse { code, retry_after }) = refusal {
        let resp = injected_response(code, retry_after, &host, &episode);
        return respond(conn, req, resp, 0, After::Graceful).note("injected refusal");
    }
    if let Some(resp) = check_auth(req, shared) {
        return respond_skip_body(conn, req, resp);
    }
    let path = shared.store.join(&host).join(format!("{episode}.tar.gz"));
    let resp = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => match repr_digest(&path) {
            Some(digest) => Response::text(200, "")
                .for_head(Some(meta.len()), Some("application/gzip"))
                .with_header("Repr-Digest", digest),
            None => Response::text(500, "receiver store error: reading the stored archive"),
        },
        Ok(_) => Response::text(404, "not stored"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Response::text(404, "not stored"),
        Err(_) => Response::text(500, "receiver store error: checking the store"),
    };
    respond_skip_body(conn, req, resp)
}
