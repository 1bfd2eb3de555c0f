//! What to send, decided without I/O: the object key, the parts of an
//! archive, which parts a resumed upload still needs, the completion body.

use crate::layout::{MultipartProgress, UploadedPart};

/// S3 allows at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// `{prefix}/{host_id}/{episode_id}.tar.gz` (no leading slash when the
/// prefix is empty).
pub fn object_key(prefix: &str, host_id: &str, episode_id: &str) -> String {
    if prefix.is_empty() {
        format!("{host_id}/{episode_id}.tar.gz")
    } else {
        format!("{prefix}/{host_id}/{episode_id}.tar.gz")
    }
}

/// One part: its number (from 1) and byte range in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

/// The part size actually used for `bytes`: the configured one, grown
/// (to whole MiB) when the archive would need more than [`MAX_PARTS`].
pub fn effective_part_size(bytes: u64, part_size: u64) -> u64 {
    let needed = bytes.div_ceil(MAX_PARTS);
    if needed <= part_size {
        part_size
    } else {
        needed.div_ceil(1 << 20) << 20
    }
}

/// The archive cut into parts of `part_size` (the last one shorter).
pub fn part_ranges(bytes: u64, part_size: u64) -> Vec<PartRange> {
    let size = part_size.max(1);
    (0..bytes.div_ceil(size))
        .map(|i| PartRange {
            number: (i + 1) as u32,
            offset: i * size,
            len: size.min(bytes - i * size),
        })
        .collect()
}

/// A part as `ListParts` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
}

/// Which parts a resumed upload keeps and which it still sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// Recorded by us *and* listed by the store with the same ETag and size.
    pub keep: Vec<UploadedPart>,
    /// Everything else, in order.
    pub missing: Vec<PartRange>,
}

/// A part counts as uploaded only when both sides agree on it: recorded
/// after the store acknowledged it (so we know its checksum), and listed by
/// the store now with the same ETag and the size it must have. A part the
/// store lists but we never recorded (killed between its answer and the
/// write of the state) is sent again, which replaces it.
pub fn plan_resume(
    recorded: &MultipartProgress,
    listed: &[ListedPart],
    ranges: &[PartRange],
) -> ResumePlan {
    let mut keep = Vec::new();
    let mut missing = Vec::new();
    for range in ranges {
        let ours = recorded.parts.iter().find(|p| p.number == range.number);
        let theirs = listed.iter().find(|p| p.number == range.number);
        match (ours, theirs) {
            (Some(ours), Some(theirs))
                if same_etag(&ours.etag, &theirs.etag)
                    && ours.size == range.len
                    && theirs.size == range.len =>
            {
                keep.push(ours.clone())
            }
            _ => missing.push(*range),
        }
    }
    ResumePlan { keep, missing }
}

/// Whether a recorded upload can go on for this archive: same key, same
/// archive, same cut. Otherwise it is aborted and a new one started.
pub fn resumable(
    recorded: &MultipartProgress,
    key: &str,
    sha256_hex: &str,
    part_size: u64,
) -> bool {
    recorded.key == key && recorded.archive_sha256 == sha256_hex && recorded.part_size == part_size
}

/// ETags compare without their quotes (stores differ in quoting them).
pub fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

/// The `CompleteMultipartUpload` body: every part in order, with its
/// ETag and SHA-256 checksum.
pub fn complete_body(parts: &[UploadedPart]) -> String {
    let mut sorted: Vec<&UploadedPart> = parts.iter().collect();
    sorted.sort_by_key(|p| p.number);
    let mut xml =
        String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for p in sorted {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag><ChecksumSHA256>{}</ChecksumSHA256></Part>",
            p.number,
            xml_escape(&p.etag),
            xml_escape(&p.sha256)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bytes of the archive already on the store (kept parts).
pub fn kept_bytes(plan: &ResumePlan) -> u64 {
    plan.keep.iter().map(|p| p.size).sum()
}
