//! The pure parts of the S3 receiver, table-tested: what each answer
//! means, which parts a resumed upload sends.
use super::classify::*;
use super::plan::*;
use crate::layout::{MultipartProgress, UploadedPart};
use crate::machine::host::HostSignal;
use crate::outcome::{OutcomeKind, Verdict};

fn err(status: u16, code: &str) -> S3Error {
    S3Error {
        status,
        code: code.into(),
        message: String::new(),
    }
}

#[test]
fn error_codes_map_to_verdicts_and_host_signals() {
    // (status, code, outcome, host signal kind)
    let table: &[(u16, &str, OutcomeKind, &str)] = &[
        (403, "InvalidAccessKeyId", OutcomeKind::HostError, "refused"),
        (
            403,
            "SignatureDoesNotMatch",
            OutcomeKind::HostError,
            "refused",
        ),
        (403, "AccessDenied", OutcomeKind::HostError, "refused"),
        (403, "", OutcomeKind::HostError, "refused"),
        (404, "NoSuchBucket", OutcomeKind::HostError, "refused"),
        (301, "PermanentRedirect", OutcomeKind::HostError, "refused"),
        (
            400,
            "AuthorizationHeaderMalformed",
            OutcomeKind::HostError,
            "refused",
        ),
        (
            403,
            "RequestTimeTooSkewed",
            OutcomeKind::HostError,
            "refused",
        ),
        (501, "NotImplemented", OutcomeKind::HostError, "refused"),
        (400, "InvalidArgument", OutcomeKind::HostError, "refused"),
        (503, "SlowDown", OutcomeKind::Retry, "unavailable"),
        (503, "", OutcomeKind::Retry, "unavailable"),
        (500, "InternalError", OutcomeKind::Retry, "unavailable"),
        (502, "", OutcomeKind::Retry, "unavailable"),
        (429, "", OutcomeKind::Retry, "unavailable"),
        (400, "BadDigest", OutcomeKind::Retry, "answered"),
        (
            400,
            "XAmzContentSHA256Mismatch",
            OutcomeKind::Retry,
            "answered",
        ),
        (400, "RequestTimeout", OutcomeKind::Retry, "answered"),
        (404, "NoSuchUpload", OutcomeKind::Retry, "answered"),
        (400, "InvalidPart", OutcomeKind::Retry, "answered"),
    ];
    for (status, code, outcome, signal) in table {
        let e = err(*status, code);
        let v = verdict_of(&e);
        assert_eq!(v.kind(), *outcome, "{status} {code}: {v:?}");
        // Nothing the store says about auth or the bucket quarantines.
        assert!(!matches!(v, Verdict::Quarantine { .. }), "{status} {code}");
        let got = match signal_of(&v) {
            HostSignal::Refused { .. } => "refused",
            HostSignal::Unavailable { .. } => "unavailable",
            HostSignal::Answered => "answered",
            HostSignal::Silent => "silent",
        };
        assert_eq!(got, *signal, "{status} {code}");
    }
}

#[test]
fn host_level_fixes_name_the_config_key() {
    let fix = |status, code| match verdict_of(&err(status, code)) {
        Verdict::HostError { fix, .. } => fix,
        other => panic!("{status} {code}: {other:?}"),
    };
    assert!(fix(403, "InvalidAccessKeyId").contains("receiver.access_key_id"));
    assert!(fix(403, "SignatureDoesNotMatch").contains("receiver.secret_access_key_file"));
    assert!(fix(404, "NoSuchBucket").contains("s3://BUCKET"));
    assert!(fix(403, "AccessDenied").contains("s3:PutObject"));
    assert_eq!(
        fix_in_reason("S3 403 SignatureDoesNotMatch: The request signature we calculated"),
        Some(FIX_SECRET)
    );
    assert_eq!(fix_in_reason("S3 404 NoSuchBucket"), Some(FIX_BUCKET));
    assert_eq!(fix_in_reason("S3 503 SlowDown: reduce"), None);
    assert_eq!(fix_in_reason("HTTP 403: forbidden"), None);
}

#[test]
fn error_documents_are_parsed() {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
                <Message>The specified bucket does not exist</Message><BucketName>b</BucketName></Error>";
    let e = S3Error::parse(404, body);
    assert_eq!(e.code, "NoSuchBucket");
    assert_eq!(
        e.reason(),
        "S3 404 NoSuchBucket: The specified bucket does not exist"
    );
    assert!(is_error_document(body));
    assert!(!is_error_document(
        "<?xml version=\"1.0\"?><CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
    ));
    assert_eq!(S3Error::parse(403, "").reason(), "S3 403 (no error code)");
    assert_eq!(xml_field("<a>&amp;&lt;</a>", "a").as_deref(), Some("&<"));
}

#[test]
fn an_existing_object_is_a_duplicate_or_an_id_reuse() {
    let ours = "ab".repeat(32);
    assert_eq!(
        existing_object(Some(&ours.to_uppercase()), &ours, "HEAD".into()),
        Verdict::Duplicate
    );
    let other = "cd".repeat(32);
    match existing_object(Some(&other), &ours, "HEAD /b/k answered 200".into()) {
        Verdict::Quarantine {
            status,
            reason,
            refusal_check,
        } => {
            assert_eq!(status, 412);
            assert!(reason.contains("reused"), "{reason}");
            assert!(reason.contains(&other), "{reason}");
            assert_eq!(refusal_check.as_deref(), Some("HEAD /b/k answered 200"));
        }
        v => panic!("{v:?}"),
    }
    // No checksum: a foreign object or not an S3 API at all; never a refusal.
    assert_eq!(
        existing_object(None, &ours, "HEAD".into()).kind(),
        OutcomeKind::HostError
    );
}

#[test]
fn keys_and_parts() {
    assert_eq!(object_key("raw", "lab-7", "ep 1"), "raw/lab-7/ep 1.tar.gz");
    assert_eq!(object_key("", "lab-7", "ep1"), "lab-7/ep1.tar.gz");
    let mib = 1 << 20;
    let parts = part_ranges(300 * mib, 64 * mib);
    assert_eq!(parts.len(), 5);
    assert_eq!(parts[4].offset, 256 * mib);
    assert_eq!(parts[4].len, 44 * mib);
    assert_eq!(parts.iter().map(|p| p.len).sum::<u64>(), 300 * mib);
    assert_eq!(part_ranges(10 * mib, 5 * mib).len(), 2);
    assert!(part_ranges(0, 5 * mib).is_empty());
    // 10,000 parts at most: the size grows to whole MiB.
    let huge = 1_000_000 * mib;
    let size = effective_part_size(huge, 64 * mib);
    assert!(size > 64 * mib && size.is_multiple_of(mib));
    assert!(part_ranges(huge, size).len() as u64 <= MAX_PARTS);
    assert_eq!(effective_part_size(300 * mib, 64 * mib), 64 * mib);
}

fn recorded(parts: &[(u32, &str, u64)]) -> MultipartProgress {
    MultipartProgress {
        key: "raw/lab-7/ep.tar.gz".into(),
        upload_id: "u1".into(),
        part_size: 10,
        archive_sha256: "aa".into(),
        parts: parts
            .iter()
            .map(|(n, e, s)| UploadedPart {
                number: *n,
                etag: (*e).into(),
                sha256: format!("sum{n}"),
                size: *s,
            })
            .collect(),
    }
}

fn listed(parts: &[(u32, &str, u64)]) -> Vec<ListedPart> {
    parts
        .iter()
        .map(|(n, e, s)| ListedPart {
            number: *n,
            etag: (*e).into(),
            size: *s,
        })
        .collect()
}

#[test]
fn resume_sends_only_parts_both_sides_agree_are_missing() {
    let ranges = part_ranges(45, 10); // 10, 10, 10, 10, 5
    let numbers = |plan: &ResumePlan| plan.missing.iter().map(|r| r.number).collect::<Vec<_>>();
    // (recorded, listed, kept, missing)
    type Case<'a> = (
        &'a [(u32, &'a str, u64)],
        &'a [(u32, &'a str, u64)],
        usize,
        Vec<u32>,
    );
    let cases: Vec<Case> = vec![
        // Two parts done and listed: send the other three.
        (
            &[(1, "\"e1\"", 10), (2, "\"e2\"", 10)],
            &[(1, "e1", 10), (2, "\"e2\"", 10)],
            2,
            vec![3, 4, 5],
        ),
        // Listed but never recorded (killed before the state write): resent.
        (
            &[(1, "e1", 10)],
            &[(1, "e1", 10), (2, "e2", 10)],
            1,
            vec![2, 3, 4, 5],
        ),
        // Recorded but the store lost it: resent.
        (
            &[(1, "e1", 10), (2, "e2", 10)],
            &[(2, "e2", 10)],
            1,
            vec![1, 3, 4, 5],
        ),
        // Another ETag or a short part: resent.
        (
            &[(1, "e1", 10), (2, "e2", 10)],
            &[(1, "x1", 10), (2, "e2", 9)],
            0,
            vec![1, 2, 3, 4, 5],
        ),
        // Everything there: nothing to send.
        (
            &[
                (1, "e1", 10),
                (2, "e2", 10),
                (3, "e3", 10),
                (4, "e4", 10),
                (5, "e5", 5),
            ],
            &[
                (1, "e1", 10),
                (2, "e2", 10),
                (3, "e3", 10),
                (4, "e4", 10),
                (5, "e5", 5),
            ],
            5,
            vec![],
        ),
        (&[], &[], 0, vec![1, 2, 3, 4, 5]),
    ];
    for (i, (rec, list, kept, missing)) in cases.into_iter().enumerate() {
        let plan = plan_resume(&recorded(rec), &listed(list), &ranges);
        assert_eq!(plan.keep.len(), kept, "case {i}: {plan:?}");
        assert_eq!(numbers(&plan), missing, "case {i}");
        assert_eq!(
            kept_bytes(&plan) + plan.missing.iter().map(|r| r.len).sum::<u64>(),
            45,
            "case {i}"
        );
    }
}

#[test]
fn a_recorded_upload_resumes_only_for_the_same_archive() {
    let mp = recorded(&[]);
    assert!(resumable(&mp, "raw/lab-7/ep.tar.gz", "aa", 10));
    assert!(!resumable(&mp, "raw/lab-7/ep.tar.gz", "bb", 10));
    assert!(!resumable(&mp, "raw/lab-7/ep.tar.gz", "aa", 20));
    assert!(!resumable(&mp, "raw/lab-8/ep.tar.gz", "aa", 10));
}

#[test]
fn the_completion_body_lists_parts_in_order_with_checksums() {
    let mp = recorded(&[(2, "\"e2\"", 10), (1, "\"e&1\"", 10)]);
    let body = complete_body(&mp.parts);
    let first = body.find("<PartNumber>1</PartNumber>").expect("part 1");
    let second = body.find("<PartNumber>2</PartNumber>").expect("part 2");
    assert!(first < second, "{body}");
    assert!(body.contains("<ETag>&quot;e&amp;1&quot;</ETag>"), "{body}");
    assert!(
        body.contains("<ChecksumSHA256>sum2</ChecksumSHA256>"),
        "{body}"
    );
}

#[test]
fn list_parts_answers_are_read_whatever_their_root() {
    let page = |root: &str, truncated: &str| {
        format!(
            "<?xml version=\"1.0\"?><{root} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Bucket>b</Bucket><UploadId>u</UploadId><IsTruncated>{truncated}</IsTruncated>\
             <NextPartNumberMarker>2</NextPartNumberMarker>\
             <Part><PartNumber>1</PartNumber><LastModified>x</LastModified>\
             <ETag>&quot;e1&quot;</ETag><Size>10</Size></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag><Size>5</Size></Part></{root}>"
        )
    };
    for root in ["ListPartsResult", "ListPartsResponse"] {
        let (parts, next) = parse_list_parts(&page(root, "false")).expect(root);
        assert_eq!(
            parts,
            vec![
                ListedPart {
                    number: 1,
                    etag: "\"e1\"".into(),
                    size: 10
                },
                ListedPart {
                    number: 2,
                    etag: "\"e2\"".into(),
                    size: 5
                },
            ]
        );
        assert_eq!(next, None);
        assert_eq!(
            parse_list_parts(&page(root, "true")).expect(root).1,
            Some(2)
        );
    }
    assert!(parse_list_parts("<Part><PartNumber>x</PartNumber></Part>").is_err());
    assert_eq!(
        parse_upload_id(
            "<InitiateMultipartUploadResult><UploadId>abc</UploadId></InitiateMultipartUploadResult>"
        ),
        Ok("abc".to_string())
    );
    assert!(parse_upload_id("<Nope/>").is_err());
}

/// What the host pause hears from a verdict on an upload that reached the
/// receiver.
fn signal_of(verdict: &Verdict) -> HostSignal {
    HostSignal::of(
        verdict,
        crate::machine::host::Contact::Reached,
        &crate::layout::EpisodeId::parse("ep").expect("id"),
    )
}
