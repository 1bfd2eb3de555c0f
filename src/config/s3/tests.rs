//! `[receiver]` with an s3:// url: keys, defaults, forbidden combinations,
//! the secret's sources.
use std::path::Path;

use super::*;
use crate::config::Config;

fn parse_in(dir: &Path, receiver: &str, creds: Option<&Path>) -> Result<Config, String> {
    let text = format!("host_id = \"lab-7\"\n[receiver]\n{receiver}");
    Config::parse(&text, &dir.join("lab-host.toml"), creds).map_err(|e| e.to_string())
}

fn with_secret(dir: &Path) -> String {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n").expect("secret");
    format!(
        "url = \"s3://lab-episodes/raw/\"\nendpoint = \"https://rgw.lab.example:7480/\"\n\
         access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key_file = \"{}\"\n",
        secret.display()
    )
}

#[test]
fn s3_url_with_endpoint_and_secret_file() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = parse_in(d.path(), &with_secret(d.path()), None).expect("s3 config");
    let s3 = c.receiver.s3.as_ref().expect("s3 receiver");
    assert_eq!(s3.bucket, "lab-episodes");
    assert_eq!(s3.prefix, "raw");
    assert_eq!(s3.endpoint.as_deref(), Some("https://rgw.lab.example:7480"));
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.part_size, DEFAULT_PART_SIZE);
    assert_eq!(s3.multipart_threshold, DEFAULT_MULTIPART_THRESHOLD);
    assert_eq!(
        s3.secret_access_key.expose(),
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Never in Debug output, however deep.
    let shown = format!("{c:?}");
    assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
    assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
}

#[test]
fn the_credential_wins_over_the_file() {
    let d = tempfile::tempdir().expect("tempdir");
    let creds = d.path().join("creds");
    std::fs::create_dir(&creds).expect("creds dir");
    std::fs::write(creds.join(S3_SECRET_CREDENTIAL), "from-credential").expect("cred");
    let c = parse_in(d.path(), &with_secret(d.path()), Some(&creds)).expect("s3 config");
    let s3 = c.receiver.s3.expect("s3");
    assert_eq!(s3.secret_access_key.expose(), "from-credential");
    assert!(matches!(s3.secret_source, SecretSource::Credential(_)));
    // The credential alone is enough.
    let text = "url = \"s3://lab-episodes\"\nendpoint = \"https://rgw.lab.example\"\n\
                access_key_id = \"AK\"\n";
    let c = parse_in(d.path(), text, Some(&creds)).expect("credential only");
    assert_eq!(c.receiver.s3.expect("s3").prefix, "");
}

#[test]
fn http_receiver_keys_are_errors_naming_key_and_file() {
    let d = tempfile::tempdir().expect("tempdir");
    for extra in [
        "bearer_token = \"t\"\n",
        "bearer_token_file = \"/etc/cis490/token\"\n",
        "client_cert = \"/etc/cis490/client.pem\"\n",
        "client_key = \"/etc/cis490/client.key\"\n",
    ] {
        let err = parse_in(d.path(), &format!("{}{extra}", with_secret(d.path())), None)
            .expect_err(extra);
        let key = extra.split(' ').next().expect("key");
        assert!(err.contains(&format!("receiver.{key}")), "{err}");
        assert!(err.contains("lab-host.toml"), "{err}");
        assert!(err.contains("s3://"), "{err}");
    }
}

#[test]
fn missing_or_bad_secret_and_keys_are_errors() {
    let d = tempfile::tempdir().expect("tempdir");
    let base = "url = \"s3://lab-episodes\"\nendpoint = \"https://rgw\"\naccess_key_id = \"AK\"\n";
    let err = parse_in(d.path(), base, None).expect_err("no secret");
    assert!(err.contains("receiver.secret_access_key_file"), "{err}");
    assert!(err.contains(S3_SECRET_CREDENTIAL), "{err}");

    let missing = format!("{base}secret_access_key_file = \"/nonexistent/s3-secret\"\n");
    let err = parse_in(d.path(), &missing, None).expect_err("missing file");
    assert!(err.contains("receiver.secret_access_key_file"), "{err}");
    assert!(err.contains("/nonexistent/s3-secret"), "{err}");

    let empty = d.path().join("empty");
    std::fs::write(&empty, "\n").expect("empty");
    let err = parse_in(
        d.path(),
        &format!("{base}secret_access_key_file = \"{}\"\n", empty.display()),
        None,
    )
    .expect_err("empty file");
    assert!(err.contains("is empty"), "{err}");

    let no_key = "url = \"s3://lab-episodes\"\nendpoint = \"https://rgw\"\n";
    let err = parse_in(d.path(), no_key, None).expect_err("no key id");
    assert!(err.contains("receiver.access_key_id"), "{err}");

    let typo = format!("{}regoin = \"eu-west-1\"\n", with_secret(d.path()));
    let err = parse_in(d.path(), &typo, None).expect_err("typo");
    assert!(err.contains("receiver.regoin: unknown key"), "{err}");

    let aws_without_region =
        with_secret(d.path()).replace("endpoint = \"https://rgw.lab.example:7480/\"\n", "");
    let err = parse_in(d.path(), &aws_without_region, None).expect_err("no region");
    assert!(err.contains("receiver.region"), "{err}");
}

#[test]
fn plain_http_endpoint_warns_loudly() {
    let d = tempfile::tempdir().expect("tempdir");
    let text = with_secret(d.path()).replace("https://rgw", "http://rgw");
    let c = parse_in(d.path(), &text, None).expect("plain http works");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("receiver.endpoint uses plain http")),
        "{:?}",
        c.warnings
    );
    for bad in ["ftp://rgw", "https://rgw/path", "https://u:p@rgw"] {
        let text = with_secret(d.path()).replace("https://rgw.lab.example:7480/", bad);
        let err = parse_in(d.path(), &text, None).expect_err(bad);
        assert!(err.contains("receiver.endpoint"), "{bad}: {err}");
    }
}

#[test]
fn sizes_and_urls() {
    assert_eq!(parse_size("64M"), Ok(64 * MIB));
    assert_eq!(parse_size("5MiB"), Ok(5 * MIB));
    assert_eq!(parse_size("1G"), Ok(1024 * MIB));
    assert_eq!(parse_size("6000000"), Ok(6_000_000));
    assert!(parse_size("64X").is_err());
    assert!(parse_size("M").is_err());
    assert_eq!(
        split_s3_url("s3://lab-episodes/raw/2024/"),
        Ok(("lab-episodes".into(), "raw/2024".into()))
    );
    assert_eq!(
        split_s3_url("s3://lab-episodes"),
        Ok(("lab-episodes".into(), String::new()))
    );
    for bad in [
        "s3://",
        "s3://UPPER",
        "s3://ab",
        "s3://b-k/../x",
        "s3://bkt/a//b",
    ] {
        assert!(split_s3_url(bad).is_err(), "{bad}");
    }
    let d = tempfile::tempdir().expect("tempdir");
    let small = format!("{}part_size = \"1M\"\n", with_secret(d.path()));
    let err = parse_in(d.path(), &small, None).expect_err("1M parts");
    assert!(err.contains("receiver.part_size"), "{err}");
    let huge = format!("{}multipart_threshold = \"6G\"\n", with_secret(d.path()));
    let err = parse_in(d.path(), &huge, None).expect_err("6G single uploads");
    assert!(err.contains("receiver.multipart_threshold"), "{err}");
    let custom = format!(
        "{}part_size = \"16M\"\nmultipart_threshold = \"32M\"\n",
        with_secret(d.path())
    );
    let s3 = parse_in(d.path(), &custom, None)
        .expect("custom sizes")
        .receiver
        .s3
        .expect("s3");
    assert_eq!((s3.part_size, s3.multipart_threshold), (16 * MIB, 32 * MIB));
}

#[test]
fn check_secret_names_key_and_file() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = parse_in(d.path(), &with_secret(d.path()), None).expect("s3 config");
    let s3 = c.receiver.s3.expect("s3");
    assert_eq!(check_secret(&s3), Ok(()));
    std::fs::remove_file(d.path().join("s3-secret")).expect("rm");
    let err = check_secret(&s3).expect_err("gone");
    assert!(err.contains("receiver.secret_access_key_file"), "{err}");
    assert!(err.contains("s3-secret"), "{err}");
}
