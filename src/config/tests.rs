//! Config parsing: defaults, every key's errors, secrets.
use super::*;

const MINIMAL: &str = "host_id = \"lab-7\"\n[receiver]\nurl = \"https://collector.wg/\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/cis490/lab-host.toml"), None)
}

#[test]
fn defaults_match_the_seed() {
    let c = parse(MINIMAL).expect("minimal config");
    assert_eq!(c.host_id, "lab-7");
    assert_eq!(c.receiver.url, "https://collector.wg");
    assert_eq!(c.data_root, PathBuf::from("/var/lib/cis490/data"));
    assert_eq!(c.shipper.scan_interval, Duration::from_secs(5));
    assert_eq!(
        c.shipper.receiver_probe_interval,
        crate::machine::host::DEFAULT_PROBE_INTERVAL
    );
    assert_eq!(c.shipper.request_timeout, Duration::from_secs(60));
    assert_eq!(c.shipper.gzip_level, 6);
    assert_eq!(c.retention.keep_local_for_days, 7);
    assert_eq!(c.retention.quarantine_keep_days, 30);
    assert!(c.receiver.verify_tls);
    assert!(c.receiver.bearer_token.is_none());
    assert!(c.warnings.is_empty());
}

#[test]
fn typo_in_retention_key_names_key_and_file() {
    let text = format!("{MINIMAL}[retention]\nquarantine_keep_dayz = 3\n");
    let err = parse(&text).expect_err("typo must fail").to_string();
    assert!(
        err.contains("retention.quarantine_keep_dayz") && err.contains("unknown key"),
        "{err}"
    );
    assert!(err.contains("/etc/cis490/lab-host.toml"), "{err}");
}

#[test]
fn wrong_type_and_range_are_errors() {
    let err = parse(&format!(
        "{MINIMAL}[retention]\nkeep_local_for_days = \"7\"\n"
    ))
    .expect_err("string days")
    .to_string();
    assert!(err.contains("retention.keep_local_for_days"), "{err}");
    assert!(err.contains("expected an integer, found string"), "{err}");
    let err = parse(&format!("{MINIMAL}[shipper]\ngzip_level = 10\n"))
        .expect_err("level 10")
        .to_string();
    assert!(
        err.contains("shipper.gzip_level: 10 is out of range"),
        "{err}"
    );
    let err = parse(&format!(
        "{MINIMAL}[retention]\nquarantine_keep_days = -1\n"
    ))
    .expect_err("negative")
    .to_string();
    assert!(err.contains("retention.quarantine_keep_days"), "{err}");
    let err = parse(&format!("{MINIMAL}[shipper]\nscan_interval_s = 0\n"))
        .expect_err("zero interval")
        .to_string();
    assert!(err.contains("shipper.scan_interval_s"), "{err}");
    let err = parse(&format!(
        "{MINIMAL}[shipper]\nreceiver_probe_interval_s = 7200\n"
    ))
    .expect_err("a probe interval over an hour")
    .to_string();
    assert!(
        err.contains("shipper.receiver_probe_interval_s") && err.contains("out of range"),
        "{err}"
    );
    let c = parse(&format!(
        "{MINIMAL}[shipper]\nreceiver_probe_interval_s = 120\n"
    ))
    .expect("valid");
    assert_eq!(c.shipper.receiver_probe_interval, Duration::from_secs(120));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("shipper.receiver_probe_interval_s = 120")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn unknown_section_and_missing_keys() {
    let err = parse(&format!("{MINIMAL}[shiper]\nscan_interval_s = 1\n"))
        .expect_err("unknown section")
        .to_string();
    assert!(err.contains("shiper: unknown key"), "{err}");
    let err = parse("[receiver]\nurl = \"https://x\"\n")
        .expect_err("no host id")
        .to_string();
    assert!(err.contains("host_id: required but missing"), "{err}");
    let err = parse("host_id = \"h\"\n").expect_err("no url").to_string();
    assert!(err.contains("receiver.url: required but missing"), "{err}");
    let err = parse("host_id = \"h\"\n[receiver]\nurl = \"ftp://x\"\n")
        .expect_err("ftp")
        .to_string();
    assert!(err.contains("receiver.url"), "{err}");
}

#[test]
fn syntax_error_is_one_line_with_file() {
    let err = parse("host_id = \n").expect_err("syntax").to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.starts_with("/etc/cis490/lab-host.toml: not valid TOML"),
        "{err}"
    );
}

#[test]
fn seed_cleanup_interval_is_accepted_with_warning() {
    let c = parse(&format!(
        "{MINIMAL}[retention]\nquarantine_cleanup_interval_s = 3600\n"
    ))
    .expect("accepted");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("timer"), "{:?}", c.warnings);
    assert!(
        parse(&format!(
            "{MINIMAL}[retention]\nquarantine_cleanup_interval_s = \"x\"\n"
        ))
        .is_err()
    );
}

#[test]
fn token_sources_and_redaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "s3cret-from-file\n").expect("write");
    let text = format!(
        "host_id = \"h\"\n[receiver]\nurl = \"https://x\"\nbearer_token_file = \"{}\"\n",
        tok.display()
    );
    let c = parse(&text).expect("token file");
    let t = c.receiver.bearer_token.as_ref().expect("token");
    assert_eq!(t.expose(), "s3cret-from-file");
    assert!(!format!("{c:?}").contains("s3cret"));

    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    std::fs::write(creds.join("bearer-token"), "from-credential").expect("write");
    let c = Config::parse(&text, Path::new("x.toml"), Some(&creds)).expect("credential");
    assert_eq!(
        c.receiver.bearer_token.as_ref().map(Secret::expose),
        Some("from-credential")
    );
    assert!(matches!(
        c.receiver.bearer_token_source,
        Some(TokenSource::Credential(_))
    ));

    let both = format!("{text}bearer_token = \"inline\"\n");
    assert!(parse(&both).is_err());
}

#[test]
fn verify_tls_false_warns() {
    let c = parse("host_id = \"h\"\n[receiver]\nurl = \"https://x\"\nverify_tls = false\n")
        .expect("ok");
    assert!(!c.receiver.verify_tls);
    assert!(c.warnings.iter().any(|w| w.contains("verify_tls = false")));
}

#[test]
fn user_information_in_the_url_is_refused_without_printing_it() {
    for url in [
        "https://user:s3cret@collector.wg",
        "https://s3cret@collector.wg/base",
        "http://user:s3cret@",
    ] {
        let err = parse(&format!("host_id = \"h\"\n[receiver]\nurl = \"{url}\"\n"))
            .expect_err(url)
            .to_string();
        assert!(err.contains("receiver.url"), "{err}");
        assert!(err.contains("lab-host.toml"), "{err}");
        assert!(!err.contains("s3cret"), "secret printed: {err}");
    }
    assert_eq!(
        redact_userinfo("https://u:p@h:8443/x@y"),
        "https://***@h:8443/x@y"
    );
    assert_eq!(redact_userinfo("https://h/x@y"), "https://h/x@y");
}

#[test]
fn good_guest_keys_default_and_validate() {
    let c = parse(MINIMAL).expect("minimal config");
    assert_eq!(c.shipper.disk_reserve_percent, 10.0);
    assert!(c.shipper.upload_rate_limit.is_unlimited());
    assert_eq!(c.shipper.compress_threads, 0);

    let with = |lines: &str| parse(&format!("{MINIMAL}[shipper]\n{lines}\n"));
    let c = with("disk_reserve_percent = 0\nupload_rate_limit = \"08:00,10M 19:00,off\"\ncompress_threads = 1")
        .expect("valid keys");
    assert_eq!(c.shipper.disk_reserve_percent, 0.0);
    assert_eq!(c.shipper.upload_rate_limit.rate_at(9 * 60), Some(10 << 20));
    assert_eq!(c.shipper.compress_threads, 1);

    for (lines, key, says) in [
        (
            "disk_reserve_percent = -1.0",
            "shipper.disk_reserve_percent",
            "out of range",
        ),
        (
            "disk_reserve_percent = 99.5",
            "shipper.disk_reserve_percent",
            "out of range",
        ),
        (
            "disk_reserve_percent = \"10%\"",
            "shipper.disk_reserve_percent",
            "a number",
        ),
        (
            "disk_reserve_percent = nan",
            "shipper.disk_reserve_percent",
            "out of range",
        ),
        (
            "upload_rate_limit = \"10Q\"",
            "shipper.upload_rate_limit",
            "unknown unit",
        ),
        (
            "upload_rate_limit = \"25:00,1M\"",
            "shipper.upload_rate_limit",
            "time of day",
        ),
        (
            "upload_rate_limit = 10",
            "shipper.upload_rate_limit",
            "a string",
        ),
        (
            "compress_threads = -1",
            "shipper.compress_threads",
            "out of range",
        ),
        (
            "compress_threads = 2.5",
            "shipper.compress_threads",
            "an integer",
        ),
    ] {
        let e = with(lines).expect_err(lines).to_string();
        assert!(e.contains(key), "{lines}: {e}");
        assert!(e.contains(says), "{lines}: {e}");
        assert!(e.contains("lab-host.toml"), "{lines}: {e}");
    }
}
