//! A real S3 implementation for the tests: `moto_server` (PyPI
//! `moto[server]`, installed by scripts/test.sh) on a loopback port, with
//! signature checking on (an IAM user and key made at setup), and a small
//! boto3 helper (tests/s3/moto_helper.py) to look into it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::process::wait_until;

pub const BUCKET: &str = "lab-episodes";

pub struct Moto {
    child: Child,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/moto_helper.py")
}

impl Moto {
    /// Start moto_server with `BUCKET` and a key; panics (never skips) if
    /// moto is not installed: scripts/test.sh installs it.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto.log");
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Signatures are checked after the setup's four calls.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("moto_server is not installed: run `pip install 'moto[server]'` (scripts/test.sh does)");
        let endpoint = format!("http://127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "moto_server did not start"
        );
        let mut moto = Moto {
            child,
            endpoint,
            key_id: String::new(),
            secret: String::new(),
            log,
            _dir: dir,
        };
        let keys = moto.helper(&["setup", BUCKET]);
        moto.key_id = keys["key_id"].as_str().expect("key id").to_string();
        moto.secret = keys["secret"].as_str().expect("secret").to_string();
        moto
    }

    /// Run the helper; its JSON answer.
    pub fn helper(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("python3")
            .arg(helper())
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "moto_helper {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("helper json")
    }

    /// The helper with this key: `cmd KEY_ID SECRET args...`.
    pub fn ask(&self, cmd: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec![cmd, &self.key_id, &self.secret];
        all.extend_from_slice(args);
        self.helper(&all)
    }

    /// `[receiver]` for this store (with `endpoint`, which may be a proxy's).
    pub fn receiver_toml(
        &self,
        endpoint: &str,
        secret_file: &std::path::Path,
        extra: &str,
    ) -> String {
        format!(
            "url = \"s3://{BUCKET}/raw\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n{extra}",
            self.key_id,
            secret_file.display()
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of the store that counts the bytes the client
/// sends through it.
pub struct CountingProxy {
    pub endpoint: String,
    pub sent: Arc<AtomicU64>,
}

impl CountingProxy {
    pub fn to(upstream: &str) -> CountingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let counter = counter.clone();
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || pipe(client, server, Some(counter)));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        CountingProxy { endpoint, sent }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.sent.store(0, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = &counter {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
