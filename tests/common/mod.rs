//! Shared integration-test support: a real dev receiver process on a real
//! loopback socket, throwaway TLS material, and temporary data roots.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SHIP_EPISODE: &str = env!("CARGO_BIN_EXE_ship-episode");
pub const QUARANTINE_PRUNE: &str = env!("CARGO_BIN_EXE_quarantine-prune");
pub const DEV_RECEIVER: &str = env!("CARGO_BIN_EXE_cis490-dev-receiver");

/// PEM files of a test PKI: a CA, a server certificate for 127.0.0.1 and
/// localhost, and a client certificate, all signed by the CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        };
        let (ca_pem, ca_issuer) = ca("cis490 test CA");
        write("ca.pem", ca_pem);
        let (cert, key) = leaf(&ca_issuer, &["127.0.0.1", "localhost"], false);
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(&ca_issuer, &["lab-test"], true);
        write("client.pem", cert);
        write("client.key", key);
        // A client certificate from an unrelated CA: must be refused.
        let (other_pem, other_issuer) = ca("some other CA");
        write("other-ca.pem", other_pem);
        let (cert, key) = leaf(&other_issuer, &["intruder"], true);
        write("rogue-client.pem", cert);
        write("rogue-client.key", key);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), rcgen::Issuer::new(params, key))
}

fn leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    names: &[&str],
    client: bool,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// A running `cis490-dev-receiver`, killed on drop.
pub struct Receiver {
    child: Child,
    pub url: String,
    pub store: tempfile::TempDir,
    control: reqwest::blocking::Client,
}

impl Receiver {
    pub fn http(args: &[&str]) -> Receiver {
        Receiver::start(args, None)
    }

    /// HTTPS with the PKI's server certificate; `extra` may add
    /// `--client-ca` for mutual TLS.
    pub fn https(pki: &Pki, extra: &[&str]) -> Receiver {
        let cert = pki.path("server.pem");
        let key = pki.path("server.key");
        let mut args = vec![
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Receiver::start(&refs, Some(pki))
    }

    fn start(args: &[&str], pki: Option<&Pki>) -> Receiver {
        let store = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(DEV_RECEIVER)
            .arg("--store")
            .arg(store.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dev receiver");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let mut control = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
        if let Some(pki) = pki {
            let ca = std::fs::read(pki.path("ca.pem")).expect("ca");
            control =
                control.tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).expect("ca pem"));
            let mut id = std::fs::read(pki.path("client.pem")).expect("client cert");
            id.extend(std::fs::read(pki.path("client.key")).expect("client key"));
            control = control.identity(reqwest::Identity::from_pem(&id).expect("identity"));
        }
        Receiver {
            child,
            url,
            store,
            control: control.build().expect("control client"),
        }
    }

    /// Set a behaviour rule for an episode id (`*` for all).
    pub fn behave(&self, id: &str, spec: &str) {
        let r = self
            .control
            .put(format!("{}/_control/behave/{id}", self.url))
            .body(spec.to_string())
            .send()
            .expect("control request");
        assert!(
            r.status().is_success(),
            "behave {id}={spec}: {}",
            r.status()
        );
    }

    pub fn clear(&self, id: &str) {
        let _ = self
            .control
            .delete(format!("{}/_control/behave/{id}", self.url))
            .send();
    }

    pub fn stats(&self) -> serde_json::Value {
        let body = self
            .control
            .get(format!("{}/_control/stats", self.url))
            .send()
            .expect("stats")
            .bytes()
            .expect("stats body");
        serde_json::from_slice(&body).expect("stats json")
    }

    /// How many PUTs reached the receiver for `host/id`.
    pub fn puts(&self, host: &str, id: &str) -> u64 {
        self.stats()["puts"][format!("{host}/{id}")]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn stored_path(&self, host: &str, id: &str) -> PathBuf {
        self.store.path().join(host).join(format!("{id}.tar.gz"))
    }

    pub fn stored(&self, host: &str, id: &str) -> bool {
        self.stored_path(host, id).is_file()
    }

    /// Every entry of a stored archive: (path, kind, content).
    pub fn entries(&self, host: &str, id: &str) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let f = std::fs::File::open(self.stored_path(host, id)).expect("stored archive");
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        ar.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let kind = e.header().entry_type();
                let mut content = Vec::new();
                e.read_to_end(&mut content).expect("content");
                (path, kind, content)
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary data root with a config file pointing at a receiver.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub host: String,
    pub config: PathBuf,
}

impl Site {
    pub fn new(url: &str) -> Site {
        Site::with_receiver_toml(&format!("url = \"{url}\"\n"), "")
    }

    /// `receiver` is the body of the `[receiver]` table; `extra` is appended.
    pub fn with_receiver_toml(receiver: &str, extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = "lab-test".to_string();
        let data = dir.path().join("data");
        let config = dir.path().join("lab-host.toml");
        std::fs::write(
            &config,
            format!(
                "host_id = \"{host}\"\n[paths]\ndata_root = \"{}\"\n[receiver]\n{receiver}\n\
                 [shipper]\nrequest_timeout_s = 10\n{extra}",
                data.display()
            ),
        )
        .expect("write config");
        for s in ["episodes", "outbox", "shipped", "quarantine"] {
            std::fs::create_dir_all(data.join(s)).expect("mkdir");
        }
        Site { dir, host, config }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state_dir(&self, state: &str) -> PathBuf {
        self.data().join(state)
    }

    /// Record a ready episode the way a recorder does: build it aside, then
    /// rename it into `episodes/`.
    pub fn add_episode(&self, id: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let staging = self.dir.path().join(format!("recording-{id}"));
        for (name, content) in files {
            let p = staging.join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
        std::fs::create_dir_all(&staging).expect("mkdir");
        std::fs::write(staging.join("done.marker"), b"").expect("marker");
        let dest = self.state_dir("episodes").join(id);
        std::fs::rename(&staging, &dest).expect("rename into episodes");
        dest
    }

    /// Which state directory holds the episode (None if none does).
    pub fn where_is(&self, id: &str) -> Option<&'static str> {
        ["episodes", "outbox", "shipped", "quarantine"]
            .into_iter()
            .find(|s| self.state_dir(s).join(id).is_dir())
    }

    pub fn ship(&self, args: &[&str]) -> Output {
        self.ship_with_timeout(args, Duration::from_secs(60))
    }

    /// Run `ship-episode`, killing it (and failing) if it hangs.
    pub fn ship_with_timeout(&self, args: &[&str], limit: Duration) -> Output {
        let child = Command::new(SHIP_EPISODE)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ship-episode");
        wait_with_limit(child, limit)
    }

    pub fn retry_state(&self, id: &str) -> serde_json::Value {
        let p = self.state_dir("outbox").join(format!("{id}.retry.json"));
        serde_json::from_slice(&std::fs::read(&p).expect("retry file")).expect("retry json")
    }

    pub fn sidecar(&self, state: &str, id: &str) -> serde_json::Value {
        let p = self.state_dir(state).join(format!("{id}.json"));
        serde_json::from_slice(&std::fs::read(&p).expect("sidecar")).expect("sidecar json")
    }
}

/// Wait for a child, killing it if it runs past `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "process still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    seed |= 1;
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
