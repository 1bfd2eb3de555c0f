//! `--check-config` on every binary: a good config prints `OK` and exits 0;
//! each broken config prints the line that names the key and the file and
//! exits 78. Real files, real certificates (rcgen), the real binaries; the
//! check never touches the data root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Pki;

const BINARIES: [&str; 4] = [
    env!("CARGO_BIN_EXE_ship-episode"),
    env!("CARGO_BIN_EXE_ship-scanner"),
    env!("CARGO_BIN_EXE_quarantine-prune"),
    env!("CARGO_BIN_EXE_doctor"),
];

struct Case {
    dir: tempfile::TempDir,
    pki: Pki,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("token"), "t0ken\n").expect("token");
        Case {
            dir,
            pki: Pki::new(),
        }
    }

    fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A config naming the PKI's CA, client certificate and key and the
    /// token file; `edit` changes the receiver lines (key, path).
    fn config(&self, edit: &[(&str, String)]) -> PathBuf {
        let mut receiver = vec![
            ("url", "\"https://127.0.0.1:9\"".to_string()),
            ("ca_bundle", quoted(&self.pki.path("ca.pem"))),
            ("client_cert", quoted(&self.pki.path("client.pem"))),
            ("client_key", quoted(&self.pki.path("client.key"))),
            ("bearer_token_file", quoted(&self.dir.path().join("token"))),
        ];
        for (k, v) in edit {
            match receiver.iter_mut().find(|(name, _)| name == k) {
                Some(entry) => entry.1 = v.clone(),
                None => receiver.push((k, v.clone())),
            }
        }
        let lines: Vec<String> = receiver.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let path = self.dir.path().join("lab-host.toml");
        fs::write(
            &path,
            format!(
                "host_id = \"lab-test\"\n[paths]\ndata_root = {}\n[receiver]\n{}\n",
                quoted(&self.data_root()),
                lines.join("\n")
            ),
        )
        .expect("config");
        path
    }
}

fn cfg_name(c: &Case) -> String {
    c.dir.path().join("lab-host.toml").display().to_string()
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn check(bin: &str, config: &Path) -> Output {
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("CIS490_CONFIG")
        .output()
        .expect("run")
}

fn name(bin: &str) -> &str {
    bin.rsplit('/').next().unwrap_or(bin)
}

#[test]
fn a_good_config_is_ok_for_every_binary() {
    let c = Case::new();
    let cfg = c.config(&[]);
    for bin in BINARIES {
        let out = check(bin, &cfg);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout, "OK\n", "{}: {out:?}", name(bin));
        assert_eq!(out.status.code(), Some(0), "{}", name(bin));
    }
    assert!(
        !c.data_root().exists(),
        "--check-config created the data root"
    );
}

/// What is wrong, the receiver lines that make it so, what the line says.
type BrokenCase<'a> = (&'a str, Vec<(&'a str, String)>, Vec<String>);

#[test]
fn each_broken_config_names_its_problem_and_exits_78() {
    let c = Case::new();
    let missing_ca = c.dir.path().join("no-such-ca.pem");
    let garbage = c.dir.path().join("garbage.pem");
    fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .expect("garbage");
    let missing_key = c.dir.path().join("no-such.key");
    let missing_token = c.dir.path().join("no-such-token");
    let cases: Vec<BrokenCase> = vec![
        (
            "unknown key",
            vec![("verfy_tls", "false".into())],
            vec!["receiver.verfy_tls: unknown key".into()],
        ),
        (
            "missing CA file",
            vec![("ca_bundle", quoted(&missing_ca))],
            vec![format!(
                "receiver.ca_bundle: cannot read {}: No such file",
                missing_ca.display()
            )],
        ),
        (
            "garbage CA",
            vec![("ca_bundle", quoted(&garbage))],
            vec![format!(
                "receiver.ca_bundle: {}: certificate 1 is not an X.509 certificate",
                garbage.display()
            )],
        ),
        (
            "key of another certificate",
            vec![("client_key", quoted(&c.pki.path("rogue-client.key")))],
            vec![
                format!(
                    "{}: receiver.client_key {}",
                    cfg_name(&c),
                    c.pki.path("rogue-client.key").display()
                ),
                "does not match the certificate in receiver.client_cert".into(),
            ],
        ),
        (
            "unreadable key",
            vec![("client_key", quoted(&missing_key))],
            vec![format!(
                "receiver.client_key: cannot read {}: No such file",
                missing_key.display()
            )],
        ),
        (
            "expired certificate",
            vec![
                ("client_cert", quoted(&c.pki.path("expired-client.pem"))),
                ("client_key", quoted(&c.pki.path("expired-client.key"))),
            ],
            vec![
                format!(
                    "{}: receiver.client_cert {}",
                    cfg_name(&c),
                    c.pki.path("expired-client.pem").display()
                ),
                " expired on ".into(),
            ],
        ),
        (
            "missing token file",
            vec![("bearer_token_file", quoted(&missing_token))],
            vec![format!(
                "receiver.bearer_token_file: cannot read token file {}",
                missing_token.display()
            )],
        ),
    ];
    for (what, edit, expected) in cases {
        let cfg = c.config(&edit);
        for bin in BINARIES {
            let out = check(bin, &cfg);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(
                out.status.code(),
                Some(78),
                "{what}, {}: {stdout}",
                name(bin)
            );
            assert_eq!(lines.len(), 1, "{what}, {}: one line: {stdout}", name(bin));
            assert!(
                lines[0].starts_with(&format!("{}: ", cfg.display())),
                "{what}, {}: the line names the config: {stdout}",
                name(bin)
            );
            for part in &expected {
                assert!(
                    lines[0].contains(part.as_str()),
                    "{what}, {}: {part:?} not in {stdout}",
                    name(bin)
                );
            }
        }
    }
}

#[test]
fn several_problems_give_one_line_each() {
    let c = Case::new();
    let cfg = c.config(&[
        ("ca_bundle", quoted(&c.dir.path().join("token"))),
        ("client_key", quoted(&c.pki.path("rogue-client.key"))),
    ]);
    let out = check(BINARIES[0], &cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("receiver.ca_bundle: ") && lines[0].contains("holds no PEM certificate")
    );
    assert!(lines[1].contains("receiver.client_key ") && lines[1].contains("does not match"));
}

#[test]
fn a_missing_config_file_is_one_line_and_78() {
    let c = Case::new();
    let cfg = c.dir.path().join("absent.toml");
    for bin in BINARIES {
        let out = check(bin, &cfg);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(78), "{}: {stdout}", name(bin));
        assert_eq!(
            stdout.trim_end(),
            format!(
                "{}: cannot read config: No such file or directory (os error 2)",
                cfg.display()
            ),
            "{}",
            name(bin)
        );
    }
}

/// An `s3://` receiver: its secret key file is checked like the token, and
/// the HTTP receiver's credentials are refused with it.
#[test]
fn an_s3_receiver_checks_its_secret_file() {
    let c = Case::new();
    let secret = c.dir.path().join("s3-secret");
    fs::write(&secret, "wJalrXUtnFEMI/K7MDENG\n").expect("secret");
    let empty = c.dir.path().join("s3-empty");
    fs::write(&empty, "\n").expect("empty");
    let s3 = |extra: &str| {
        let path = c.dir.path().join("s3.toml");
        fs::write(
            &path,
            format!(
                "host_id = \"lab-test\"\n[paths]\ndata_root = {}\n[receiver]\n\
                 url = \"s3://lab-episodes/raw\"\nendpoint = \"https://127.0.0.1:9\"\n\
                 region = \"us-east-1\"\naccess_key_id = \"AKIDEXAMPLE\"\n{extra}\n",
                quoted(&c.data_root())
            ),
        )
        .expect("config");
        path
    };
    let good = s3(&format!("secret_access_key_file = {}", quoted(&secret)));
    for bin in BINARIES {
        let out = check(bin, &good);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "OK\n",
            "{}: {out:?}",
            name(bin)
        );
        assert_eq!(out.status.code(), Some(0), "{}", name(bin));
    }
    let missing = c.dir.path().join("no-such-secret");
    let cases = [
        (
            format!("secret_access_key_file = {}", quoted(&missing)),
            format!(
                "receiver.secret_access_key_file: cannot read the secret key file {}",
                missing.display()
            ),
        ),
        (
            format!("secret_access_key_file = {}", quoted(&empty)),
            format!("the secret key file {} is empty", empty.display()),
        ),
        (
            format!(
                "secret_access_key_file = {}\nbearer_token_file = {}",
                quoted(&secret),
                quoted(&c.dir.path().join("token"))
            ),
            "receiver.bearer_token_file: ".to_string(),
        ),
    ];
    for (extra, expected) in cases {
        let cfg = s3(&extra);
        for bin in BINARIES {
            let out = check(bin, &cfg);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(78),
                "{extra}, {}: {stdout}",
                name(bin)
            );
            assert_eq!(stdout.lines().count(), 1, "{extra}: {stdout}");
            assert!(stdout.contains(&expected), "{expected:?} not in {stdout}");
            assert!(
                !stdout.contains("wJalrXUtnFEMI"),
                "the secret leaked: {stdout}"
            );
        }
    }
}
