//! One signed S3 request over the shipper's own HTTP client: rusty-s3
//! builds the action's URL, aws-sigv4 signs it (SigV4 in headers), and
//! [`Transport::send`] carries it (throttle, stall timeout, cancellation,
//! progress), exactly as the HTTP receiver's PUT.

use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;

use crate::transport::{Progress, StreamedBody, Transport, TransportError};

/// The largest answer body kept (a `ListParts` page of 1,000 parts is
/// about 250 KB).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A whole answer: status, the headers we act on, the body.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub meta_sha256: Option<String>,
    pub body: String,
    /// Request body bytes the connection had not taken when it arrived.
    pub unsent: u64,
}

/// What to send besides the URL: method, headers to sign, a body.
pub(super) struct Req {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

pub(super) enum Body {
    None,
    Bytes(Vec<u8>),
    /// Streamed from the archive; the payload is not signed (its
    /// `x-amz-checksum-sha256` header is, and the store checks it).
    File(StreamedBody),
}

pub(super) struct Signer {
    pub access_key_id: String,
    pub secret: crate::config::Secret,
    pub region: String,
}

impl Signer {
    /// The SigV4 headers (`authorization`, `x-amz-date`,
    /// `x-amz-content-sha256`) for this request.
    fn sign(&self, req: &Req) -> Result<Vec<(String, String)>, TransportError> {
        let creds = aws_credential_types::Credentials::new(
            &self.access_key_id,
            self.secret.expose(),
            None,
            None,
            "cis490-config",
        );
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        // S3 signs the path as sent: encoded once, never normalized.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| TransportError::Protocol(format!("cannot sign: {e}")))?
            .into();
        let body = match &req.body {
            Body::Bytes(b) => SignableBody::Bytes(b),
            Body::None => SignableBody::Bytes(&[]),
            Body::File(_) => SignableBody::UnsignedPayload,
        };
        let signable = SignableRequest::new(
            req.method.as_str(),
            req.url.as_str(),
            req.headers.iter().map(|(k, v)| (*k, v.as_str())),
            body,
        )
        .map_err(|e| TransportError::Protocol(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| TransportError::Protocol(format!("cannot sign: {e}")))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect())
    }
}

/// Send `req` signed, read the whole answer.
pub(super) fn exchange(
    http: &Transport,
    signer: &Signer,
    req: Req,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Answer, TransportError> {
    let signed = signer.sign(&req)?;
    let mut builder = http.client.request(req.method.clone(), req.url.clone());
    for (k, v) in req.headers.iter() {
        builder = builder.header(*k, v);
    }
    for (k, v) in signed {
        builder = builder.header(k, v);
    }
    let streamed = match req.body {
        Body::None => None,
        Body::Bytes(b) => {
            builder = builder.body(b);
            None
        }
        Body::File(f) => Some(f),
    };
    http.send(builder, streamed, cancel, on_progress, read_answer)
}

async fn read_answer(
    mut response: reqwest::Response,
    unsent: u64,
) -> Result<Answer, TransportError> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = response.status().as_u16();
    let etag = header("etag");
    let meta_sha256 = header("x-amz-meta-sha256");
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            // An error answer cut short still has its status.
            Err(_) if status >= 300 => break,
            Err(e) => return Err(TransportError::Protocol(super::super::error_chain(&e))),
        }
    }
    Ok(Answer {
        status,
        etag,
        meta_sha256,
        body: String::from_utf8_lossy(&body).into_owned(),
        unsent,
    })
}
