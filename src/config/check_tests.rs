//! The check on real files: good, and each way a named file can be wrong,
//! with the systemd credentials in and out of a unit. The binaries'
//! `--check-config` is tested end to end in tests/check_config.rs.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// 2026-11-01 12:00 UTC, inside the test certificate's validity.
const NOW: u64 = 1_793_534_400;
const DAY: u64 = 86_400;

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A CA, a client certificate and its key, a token, and an empty
    /// credential sources directory.
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "lab-7");
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        leaf.not_before = epoch + std::time::Duration::from_secs(NOW - 30 * DAY);
        leaf.not_after = epoch + std::time::Duration::from_secs(NOW + 30 * DAY);
        let cert = leaf.signed_by(&key, &issuer).expect("leaf");
        let site = Site { dir };
        site.write("ca.pem", &ca_pem);
        site.write("client.pem", &cert.pem());
        site.write("client.key", &key.serialize_pem());
        site.write(
            "other.key",
            &rcgen::KeyPair::generate().expect("key").serialize_pem(),
        );
        site.write("token", "s3cret-token\n");
        fs::create_dir(site.path("credentials")).expect("mkdir");
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.path(name), text).expect("write");
    }

    /// A config naming the site's files, with `receiver` lines replaced.
    fn config(&self, receiver: &str) -> PathBuf {
        let d = self.dir.path().display();
        let text = format!(
            "host_id = \"lab-7\"\n[paths]\ndata_root = \"{d}/data\"\n[receiver]\n\
             url = \"https://collector.example\"\n{receiver}\n"
        );
        self.write("lab-host.toml", &text);
        self.path("lab-host.toml")
    }

    fn full(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "ca_bundle = \"{d}/ca.pem\"\nclient_cert = \"{d}/client.pem\"\n\
             client_key = \"{d}/client.key\"\nbearer_token_file = \"{d}/token\""
        )
    }

    fn env(&self) -> CheckEnv {
        CheckEnv {
            credentials_dir: None,
            credential_sources: self.path("credentials"),
            now: NOW,
        }
    }

    fn check(&self, config: &Path) -> Vec<String> {
        let report = check_config(config, &self.env());
        report.problems.iter().map(|p| p.to_string()).collect()
    }
}

#[test]
fn a_good_config_has_no_problem() {
    let s = Site::new();
    let cfg = s.config(&s.full());
    assert_eq!(s.check(&cfg), Vec::<String>::new());
}

#[test]
fn every_bad_file_is_reported_at_once() {
    let s = Site::new();
    s.write("ca.pem", "not a certificate\n");
    let d = s.dir.path().display();
    let cfg = s.config(&format!(
        "ca_bundle = \"{d}/ca.pem\"\nclient_cert = \"{d}/client.pem\"\n\
         client_key = \"{d}/other.key\""
    ));
    let problems = s.check(&cfg);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("receiver.ca_bundle: ")
            && problems[0].contains("holds no PEM certificate"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("receiver.client_key ")
            && problems[1].contains("other.key does not match the certificate"),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with(&format!("{}: ", cfg.display())))
    );
}

#[test]
fn an_expired_client_certificate_is_a_problem() {
    let s = Site::new();
    let cfg = s.config(&s.full());
    let env = CheckEnv {
        now: NOW + 60 * DAY,
        ..s.env()
    };
    let report = check_config(&cfg, &env);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].key, "receiver.client_cert");
    assert!(report.problems[0].message.contains("expired on"));
}

#[test]
fn credential_sources_are_checked_as_the_units_will_load_them() {
    let s = Site::new();
    let d = s.dir.path().display();
    // No client_key in the config: the unit gets it as a credential.
    let cfg = s.config(&format!("client_cert = \"{d}/client.pem\""));
    let without = s.check(&cfg);
    assert!(
        without[0].contains("client_cert and client_key must be set together"),
        "{without:#?}"
    );

    fs::copy(s.path("client.key"), s.path("credentials/client-key")).expect("copy");
    assert_eq!(s.check(&cfg), Vec::<String>::new());

    fs::copy(s.path("other.key"), s.path("credentials/client-key")).expect("copy");
    let mismatch = s.check(&cfg);
    assert_eq!(mismatch.len(), 1, "{mismatch:#?}");
    assert!(
        mismatch[0].contains("the client-key credential") && mismatch[0].contains("does not match"),
        "{mismatch:#?}"
    );

    s.write("credentials/bearer-token", "  \n");
    let empty = s.check(&cfg);
    assert!(
        empty[0].contains("receiver.bearer_token (credential)") && empty[0].contains("is empty"),
        "{empty:#?}"
    );
}

#[test]
fn inside_a_unit_the_credentials_directory_is_used() {
    let s = Site::new();
    let creds = s.path("run-credentials");
    fs::create_dir(&creds).expect("mkdir");
    fs::write(creds.join("bearer-token"), "").expect("write");
    // The sources would be fine; inside a unit they are not what counts.
    s.write("credentials/bearer-token", "good\n");
    let cfg = s.config("");
    let env = CheckEnv {
        credentials_dir: Some(creds),
        ..s.env()
    };
    let report = check_config(&cfg, &env);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert!(report.problems[0].message.contains("is empty"));
}

#[test]
fn secret_files_are_never_quoted() {
    let s = Site::new();
    s.write("token", "line-one\nline-two\n");
    let d = s.dir.path().display();
    let cfg = s.config(&format!("bearer_token_file = \"{d}/token\""));
    let problems = s.check(&cfg);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("single line"), "{problems:#?}");
    assert!(!problems[0].contains("line-one"), "{problems:#?}");
}

#[test]
fn a_data_root_that_is_a_file_is_a_problem() {
    let s = Site::new();
    s.write("data", "");
    let problems = s.check(&s.config(""));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("paths.data_root: "), "{problems:#?}");
}

#[test]
fn the_secret_file_helper_names_the_key_and_file() {
    let s = Site::new();
    let config = Config::parse(
        "host_id = \"h\"\n[receiver]\nurl = \"https://r\"\n",
        &s.path("lab-host.toml"),
        None,
    )
    .expect("parse");
    let mut report = CheckReport::default();
    check_secret_file(&config, "x.key_file", &s.path("token"), &mut report);
    assert!(report.is_ok(), "{:#?}", report.problems);
    check_secret_file(&config, "x.key_file", &s.path("missing"), &mut report);
    s.write("blank", "\n");
    check_secret_file(&config, "x.key_file", &s.path("blank"), &mut report);
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("x.key_file: cannot read ") && lines[0].contains("missing"));
    assert!(lines[1].ends_with("blank is empty"), "{lines:#?}");
}
