//! Shared integration-test support: a real dev receiver process on a real
//! loopback socket, throwaway TLS material, temporary data roots, a real
//! unix datagram socket as `NOTIFY_SOCKET`, and handles on spawned binaries.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A temporary data root with a config file pointing at a receiver.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub host: String,
    pub config: PathBuf,
}

impl Site {
    /// Config with `url`, state directories created.
    pub fn new(url: &str) -> Site {
        Site::with_receiver_toml(&format!("url = \"{url}\"\n"), "")
    }

    /// `receiver` is the body of the `[receiver]` table; `extra` is appended.
    /// State directories created.
    pub fn with_receiver_toml(receiver: &str, extra: &str) -> Site {
        let site = Site::bare();
        site.write_config(receiver, "request_timeout_s = 10", extra);
        site.make_state_dirs();
        site
    }

    /// Nothing under the data root and no config yet: for binaries that must
    /// set up the data root themselves.
    pub fn bare() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("cis490-t")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("lab-host.toml");
        Site {
            dir,
            host: "lab-test".to_string(),
            config,
        }
    }

    /// A different host id (set before `write_config`).
    pub fn with_host(mut self, host: &str) -> Site {
        self.host = host.to_string();
        self
    }

    /// (Re)write the config: `receiver` and `shipper` are the bodies of those
    /// tables, `extra` (e.g. a `[retention]` table) is appended.
    pub fn write_config(&self, receiver: &str, shipper: &str, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "host_id = \"{}\"\n[paths]\ndata_root = \"{}\"\n[receiver]\n{receiver}\n\
                 [shipper]\n{shipper}\n{extra}",
                self.host,
                self.data().display()
            ),
        )
        .expect("write config");
    }

    pub fn make_state_dirs(&self) {
        cis490::layout::Layout::new(self.data())
            .ensure_dirs()
            .expect("state dirs");
    }

    pub fn layout(&self) -> cis490::layout::Layout {
        cis490::layout::Layout::new(self.data())
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

    /// An episode directory in `state` with `bytes` of incompressible
    /// content, and done.marker when `ready`.
    pub fn episode(&self, state: &str, id: &str, bytes: usize, ready: bool) -> PathBuf {
        let dir = self.state_dir(state).join(id);
        std::fs::create_dir_all(&dir).expect("mkdir episode");
        std::fs::write(dir.join("data.bin"), noise(bytes, id.len() as u64 + 7))
            .expect("write data");
        if ready {
            std::fs::write(dir.join("done.marker"), b"").expect("write marker");
        }
        dir
    }

    /// Names in a state directory, sorted (empty if it does not exist).
    pub fn names(&self, state: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state_dir(state))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
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

/// Wait for a child, killing it (and failing) if it runs past `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    if wait_exit(&mut child, limit).is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        panic!(
            "process still running after {limit:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().expect("output")
}

/// The child's exit status, or None if it is still running after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (incompressible), 8 per xorshift step.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Wait until `f` is true, polling; false on timeout.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

// ------------------------------------------------------------ notify socket

/// A bound unix datagram socket to pass as `NOTIFY_SOCKET`, collecting
/// every message with its arrival time.
pub struct NotifySocket {
    pub path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().expect("lock").push((Instant::now(), text));
                }
            }
        });
        NotifySocket {
            path,
            messages,
            stop,
        }
    }

    pub fn messages(&self) -> Vec<(Instant, String)> {
        self.messages.lock().expect("lock").clone()
    }

    /// Arrival times of messages holding this line (e.g. `WATCHDOG=1`).
    pub fn times_of(&self, line: &str) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| t)
            .collect()
    }

    /// The first message holding `line`, waiting up to `timeout`.
    pub fn wait_for(&self, line: &str, timeout: Duration) -> Option<(Instant, String)> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .messages()
                .into_iter()
                .find(|(_, m)| m.lines().any(|l| l == line));
            found.is_some()
        });
        found
    }

    /// The latest `STATUS=` text.
    pub fn last_status(&self) -> Option<String> {
        self.messages().into_iter().rev().find_map(|(_, m)| {
            m.lines()
                .find_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
        })
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------ child process

/// A spawned binary whose stderr goes to a log file; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

/// Spawn `bin` with a clean environment for the notify protocol.
pub fn spawn(
    bin: &str,
    args: &[&str],
    log: PathBuf,
    notify: Option<&Path>,
    watchdog: Option<Duration>,
) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .env_remove("CIS490_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).expect("stdout log"),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
    if let Some(p) = notify {
        cmd.env("NOTIFY_SOCKET", p);
    }
    if let Some(w) = watchdog {
        cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
    }
    Proc {
        child: cmd.spawn().expect("spawn"),
        log,
    }
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
