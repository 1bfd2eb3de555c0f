//! Bearer-token authentication of episode uploads.

use crate::digest::sha256;
use crate::handler::Shared;
use crate::http::{Request, Response};

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

pub fn check_auth(req: &Request, shared: &Shared) -> Option<Response> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        let exp = sha256(b"s3cret");
        assert!(token_ok(&exp, "s3cret"));
        assert!(!token_ok(&exp, "s3cres"));
        assert!(!token_ok(&exp, ""));
    }
}
