//! SHA-256: streaming hashes of upload bodies, and the `Content-Digest`
//! header they are checked against.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::http::Request;

/// Streaming SHA-256 of upload bodies (aws-lc's assembly implementation,
/// the one rustls already links: much faster than portable code on CPUs
/// without SHA extensions).
pub struct BodyHasher(aws_lc_rs::digest::Context);

impl BodyHasher {
    pub fn new() -> Self {
        BodyHasher(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
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

/// Parse `Content-Digest` (RFC 9530 dictionary) and return the sha-256 value.
pub fn parse_content_digest(req: &Request) -> Result<[u8; 32], &'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
