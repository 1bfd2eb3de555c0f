//! A real `cis490-dev-receiver` process on a loopback socket, and its
//! control endpoints.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::SHIP_EPISODE;
use super::pki::Pki;

/// Overrides where the dev receiver binary is taken from.
const DEV_RECEIVER_ENV: &str = "CIS490_DEV_RECEIVER";

/// The dev receiver binary: `$CIS490_DEV_RECEIVER`, or `cis490-dev-receiver`
/// beside this package's binaries (`target/<profile>/`). It belongs to
/// another workspace package, so Cargo does not build it for these tests
/// or tell them where it is; `cargo test --workspace` builds it.
fn dev_receiver() -> PathBuf {
    if let Some(path) = std::env::var_os(DEV_RECEIVER_ENV) {
        return PathBuf::from(path);
    }
    let profile_dir = Path::new(SHIP_EPISODE)
        .parent()
        .expect("ship-episode lives in a target profile directory");
    let bin = profile_dir.join("cis490-dev-receiver");
    if !bin.is_file() {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => String::new(),
            Some("release") => " --release".to_string(),
            Some(other) => format!(" --profile {other}"),
        };
        panic!(
            "the dev receiver {} is missing: build it with \
             `cargo build -p cis490-dev-receiver{profile}` (or run `cargo test --workspace`), \
             or point {DEV_RECEIVER_ENV} at one",
            bin.display()
        );
    }
    bin
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
        let mut child = Command::new(dev_receiver())
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

    /// How many `HEAD` requests reached the receiver for `host/id`.
    pub fn heads(&self, host: &str, id: &str) -> u64 {
        self.stats()["heads"][format!("{host}/{id}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// Whether any episode request at all reached the receiver.
    pub fn saw_nothing(&self) -> bool {
        let stats = self.stats();
        let empty = |k: &str| stats[k].as_object().is_none_or(|m| m.is_empty());
        empty("puts") && empty("heads") && stats["stored"].as_array().is_none_or(|a| a.is_empty())
    }

    /// Every episode request the receiver logged, oldest first, with its
    /// times on this process's monotonic clock.
    pub fn requests(&self) -> Vec<Request> {
        let stats = self.stats();
        // The receiver logs wall-clock time; map it onto `Instant` through
        // one reading of both clocks.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let instant = |v: &serde_json::Value| {
            let t = UNIX_EPOCH + Duration::from_micros(v.as_u64()?);
            Some(match wall.duration_since(t) {
                Ok(ago) => now.checked_sub(ago).expect("time before boot"),
                Err(ahead) => now + ahead.duration(),
            })
        };
        stats["requests"]
            .as_array()
            .expect("requests in stats")
            .iter()
            .map(|r| Request {
                key: r["key"].as_str().expect("key").to_string(),
                at: instant(&r["at_us"]).expect("at_us"),
                end: instant(&r["end_us"]),
                status: r["status"].as_u64().map(|s| s as u16),
                bytes: r["bytes"].as_u64().expect("bytes"),
            })
            .collect()
    }

    pub fn requests_for(&self, host: &str, id: &str) -> Vec<Request> {
        let key = format!("{host}/{id}");
        self.requests()
            .into_iter()
            .filter(|r| r.key == key)
            .collect()
    }

    pub fn stored_path(&self, host: &str, id: &str) -> PathBuf {
        self.store.path().join(host).join(format!("{id}.tar.gz"))
    }

    pub fn stored(&self, host: &str, id: &str) -> bool {
        self.stored_path(host, id).is_file()
    }

    /// Size of the stored archive, if any.
    pub fn stored_len(&self, host: &str, id: &str) -> Option<u64> {
        std::fs::metadata(self.stored_path(host, id))
            .ok()
            .map(|m| m.len())
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

/// One episode request as the receiver logged it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `host/id`
    pub key: String,
    /// When the request head had been read.
    pub at: Instant,
    /// When it was over (answered or given up); None while in progress.
    pub end: Option<Instant>,
    /// None if no answer was sent (a stall, a client that went away).
    pub status: Option<u16>,
    /// Body bytes read.
    pub bytes: u64,
}
