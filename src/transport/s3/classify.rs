//! What the object store's answers mean, in the verdicts the HTTP receiver
//! uses too: no I/O here, table-tested.
//!
//! Nothing the store says about credentials, the bucket or the request
//! itself ever quarantines an episode: the only refusal that does is an id
//! reuse (the key holds an object with another SHA-256).

use crate::outcome::Verdict;

/// An S3 error answer: the HTTP status and the `<Code>` of its XML body
/// (empty for a `HEAD`, which has no body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl S3Error {
    /// From a status and the body of the answer (S3's `<Error>` document).
    pub fn parse(status: u16, body: &str) -> S3Error {
        S3Error {
            status,
            code: xml_field(body, "Code").unwrap_or_default(),
            message: xml_field(body, "Message").unwrap_or_default(),
        }
    }

    /// `S3 403 SignatureDoesNotMatch: The request signature ...`: the
    /// reason recorded in the retry state, the journal and doctor.
    pub fn reason(&self) -> String {
        let code = if self.code.is_empty() {
            "(no error code)"
        } else {
            &self.code
        };
        if self.message.is_empty() {
            format!("S3 {} {code}", self.status)
        } else {
            format!("S3 {} {code}: {}", self.status, self.message)
        }
    }
}

/// The text of the first `<name>...</name>` element, if any.
pub fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&close)?;
    Some(
        body[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
            .trim()
            .to_string(),
    )
}

/// Whether a 200 to `CompleteMultipartUpload` really is an error: S3 may
/// answer 200, keep the connection open, and then send an `<Error>`.
pub fn is_error_document(body: &str) -> bool {
    let head = body.trim_start();
    let head = head
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>").map(|(_, r)| r.trim_start()))
        .unwrap_or(head);
    head.starts_with("<Error>") || head.starts_with("<Error ")
}

/// Which error codes mean what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A problem of this host's settings: pause, keep, tell the fix.
    Host(&'static str),
    /// The store is busy or failing: host-wide backoff.
    Unavailable,
    /// This attempt failed (a corrupted transfer, a timeout): retry the
    /// episode with backoff.
    Retry,
    /// The multipart upload is gone (expired, aborted): start over.
    UploadGone,
    /// The recorded parts do not make an object: start over.
    PartsRejected,
    /// The object exists already (create-only write refused): look at it.
    Exists,
}

pub const FIX_ACCESS_KEY: &str = "the store does not know this access key: check \
    receiver.access_key_id in the config (and that the key is active on the store)";
pub const FIX_SECRET: &str = "the store rejected the request signature: check the secret in \
    receiver.secret_access_key_file (or the s3-secret-access-key credential) belongs to \
    receiver.access_key_id, and receiver.region";
pub const FIX_DENIED: &str = "the store denies this key access: grant it s3:PutObject, \
    s3:GetObject, s3:ListMultipartUploadParts and s3:AbortMultipartUpload on the prefix of \
    receiver.url, and s3:ListBucket on the bucket (without it a missing object reads as \
    AccessDenied, not 404)";
pub const FIX_FOREIGN_OBJECT: &str = "check that receiver.endpoint is the store's S3 API (not \
    a console, proxy or web page that answers any path); if it is, another writer owns this \
    episode's key: move that object aside on the store, and the episode ships on the next pass";
pub const FIX_BUCKET: &str = "the bucket does not exist: check the bucket name in receiver.url \
    (s3://BUCKET/prefix) and receiver.endpoint, or create the bucket";
pub const FIX_REGION: &str = "the store wants another region or address for this bucket: set \
    receiver.region (and receiver.endpoint) to the bucket's";
pub const FIX_CLOCK: &str = "this host's clock is too far off for the store to accept \
    signatures: fix the time (timedatectl, NTP)";
pub const FIX_UNSUPPORTED: &str = "the store does not implement a request the shipper needs \
    (create-only writes, checksums or multipart): check receiver.endpoint points at an \
    S3-compatible store that supports them (see docs/protocol.md)";
pub const FIX_OTHER: &str = "the store refused this host's requests: check receiver.url, \
    receiver.endpoint, receiver.region and the access key's permissions";

/// The meaning of an error answer.
pub fn kind_of(e: &S3Error) -> ErrorKind {
    match (e.status, e.code.as_str()) {
        (_, "InvalidAccessKeyId") => ErrorKind::Host(FIX_ACCESS_KEY),
        (_, "SignatureDoesNotMatch" | "AuthorizationHeaderMalformed" | "IncompleteSignature") => {
            if e.code == "AuthorizationHeaderMalformed" {
                ErrorKind::Host(FIX_REGION)
            } else {
                ErrorKind::Host(FIX_SECRET)
            }
        }
        (_, "AccessDenied" | "AllAccessDisabled" | "AccountProblem" | "InvalidToken") => {
            ErrorKind::Host(FIX_DENIED)
        }
        (_, "ExpiredToken" | "TokenRefreshRequired") => ErrorKind::Host(FIX_SECRET),
        (_, "NoSuchBucket") => ErrorKind::Host(FIX_BUCKET),
        (_, "PermanentRedirect" | "TemporaryRedirect" | "IllegalLocationConstraintException") => {
            ErrorKind::Host(FIX_REGION)
        }
        (_, "RequestTimeTooSkewed") => ErrorKind::Host(FIX_CLOCK),
        (_, "NotImplemented") | (501, _) => ErrorKind::Host(FIX_UNSUPPORTED),
        (_, "NoSuchUpload") => ErrorKind::UploadGone,
        (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => ErrorKind::PartsRejected,
        (_, "PreconditionFailed") | (412, _) => ErrorKind::Exists,
        (
            _,
            "BadDigest"
            | "InvalidDigest"
            | "XAmzContentSHA256Mismatch"
            | "IncompleteBody"
            | "RequestTimeout"
            | "ConditionalRequestConflict"
            | "OperationAborted",
        )
        | (408 | 409, _) => ErrorKind::Retry,
        (_, "SlowDown" | "ServiceUnavailable" | "InternalError") | (429 | 500..=599, _) => {
            ErrorKind::Unavailable
        }
        // A 403 without a code (a HEAD) is about credentials or policy.
        (403, _) => ErrorKind::Host(FIX_DENIED),
        (300..=399, _) => ErrorKind::Host(FIX_REGION),
        // Any other refusal repeats for every episode: the settings.
        _ => ErrorKind::Host(FIX_OTHER),
    }
}

/// The verdict on an error answer (never a quarantine). `UploadGone`,
/// `PartsRejected` and `Exists` are handled by the caller first; reaching
/// here they mean: try again.
pub fn verdict_of(e: &S3Error) -> Verdict {
    let reason = e.reason();
    match kind_of(e) {
        ErrorKind::Host(fix) => Verdict::HostError {
            status: e.status,
            reason,
            fix,
        },
        ErrorKind::Unavailable => Verdict::Transient {
            status: Some(e.status),
            reason,
            retry_after: None,
        },
        ErrorKind::Retry | ErrorKind::UploadGone | ErrorKind::PartsRejected | ErrorKind::Exists => {
            Verdict::Transient {
                // Not a 5xx: the store answered; only this episode waits.
                status: Some(if e.status >= 500 { 400 } else { e.status }),
                reason,
                retry_after: None,
            }
        }
    }
}

/// The fix for a host-level S3 reason as recorded (`S3 403 Code: ...`),
/// for doctor's journal rows.
pub fn fix_in_reason(reason: &str) -> Option<&'static str> {
    let rest = reason.strip_prefix("S3 ")?;
    let (status, rest) = rest.split_once(' ')?;
    let status: u16 = status.parse().ok()?;
    let code = rest.split([':', ' ']).next().unwrap_or_default();
    match kind_of(&S3Error {
        status,
        code: code.to_string(),
        message: String::new(),
    }) {
        ErrorKind::Host(fix) => Some(fix),
        _ => None,
    }
}

/// What an object already under our key means (the create-only write was
/// refused, or the check before it found one). `held` is its
/// `x-amz-meta-sha256`, `check` how it was seen (kept in the sidecar).
pub fn existing_object(held: Option<&str>, ours_hex: &str, check: String) -> Verdict {
    match held {
        Some(h) if h.eq_ignore_ascii_case(ours_hex) => Verdict::Duplicate,
        Some(h) => Verdict::Quarantine {
            status: 412,
            reason: format!(
                "the store already holds different content under this key (x-amz-meta-sha256 \
                 {h}, this archive {ours_hex}): the id was reused for another recording"
            ),
            refusal_check: Some(check),
        },
        // No checksum at all: a foreign object, or an endpoint that is not
        // the S3 API (a console or a web app answers 200 to any path).
        // Neither is a refusal by the store: pause and keep everything.
        None => Verdict::HostError {
            status: 200,
            reason: format!(
                "{check}: an object without x-amz-meta-sha256 is under this episode's key"
            ),
            fix: FIX_FOREIGN_OBJECT,
        },
    }
}

/// The upload id in a `CreateMultipartUpload` answer.
pub fn parse_upload_id(body: &str) -> Result<String, String> {
    match xml_field(body, "UploadId") {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err("CreateMultipartUpload: no UploadId in the answer".into()),
    }
}

/// One page of a `ListParts` answer: the parts, and the marker to go on
/// from when it is truncated. Read by element names only: stores differ in
/// the root element's name (moto answers `ListPartsResponse`, AWS
/// `ListPartsResult`).
pub fn parse_list_parts(body: &str) -> Result<(Vec<super::plan::ListedPart>, Option<u32>), String> {
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<Part>") {
        let after = &rest[start + "<Part>".len()..];
        let end = after
            .find("</Part>")
            .ok_or("ListParts: a <Part> is not closed")?;
        let part = &after[..end];
        let field = |name: &str| {
            xml_field(part, name).ok_or_else(|| format!("ListParts: a part without {name}"))
        };
        parts.push(super::plan::ListedPart {
            number: field("PartNumber")?
                .parse()
                .map_err(|_| "ListParts: a PartNumber is not a number")?,
            etag: field("ETag")?,
            size: field("Size")?
                .parse()
                .map_err(|_| "ListParts: a Size is not a number")?,
        });
        rest = &after[end..];
    }
    let truncated = xml_field(body, "IsTruncated").is_some_and(|t| t == "true");
    let next = if truncated {
        let marker = xml_field(body, "NextPartNumberMarker")
            .and_then(|m| m.parse::<u32>().ok())
            .filter(|m| *m > 0)
            .ok_or("ListParts: truncated without a NextPartNumberMarker")?;
        Some(marker)
    } else {
        None
    };
    Ok((parts, next))
}
