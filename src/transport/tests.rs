//! Retry-After forms, digest fields, URL encoding.
use super::*;

#[test]
fn retry_after_forms() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    // Absurd values are capped, never overflow.
    assert_eq!(
        parse_retry_after("18446744073709551615", now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 9999 08:49:37 GMT", now),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 99999 08:49:37 GMT", now),
        None
    );
    assert_eq!(parse_retry_after("-5", now), None);
}

#[test]
fn digest_fields() {
    let d = [7u8; 32];
    let b64 = base64::engine::general_purpose::STANDARD.encode(d);
    assert_eq!(parse_sha256_digest(&format!("sha-256=:{b64}:")), Some(d));
    assert_eq!(
        parse_sha256_digest(&format!("sha-512=:AAAA:, sha-256=:{b64}:")),
        Some(d)
    );
    assert_eq!(parse_sha256_digest("sha-256=:AAAA:"), None);
    assert_eq!(parse_sha256_digest("garbage"), None);
}

#[test]
fn url_segments_are_encoded() {
    let rcv = ReceiverConfig {
        url: "https://collector.wg/base".into(),
        ca_bundle: None,
        client_cert: None,
        client_key: None,
        bearer_token: None,
        bearer_token_source: None,
        verify_tls: true,
        s3: None,
    };
    let t = Transport::new(&rcv, Duration::from_secs(5)).expect("transport");
    let id = EpisodeId::parse("run 1?#%").expect("id");
    assert_eq!(
        t.episode_url("lab-7", &id).expect("url").as_str(),
        "https://collector.wg/base/episodes/lab-7/run%201%3F%23%25"
    );
}
