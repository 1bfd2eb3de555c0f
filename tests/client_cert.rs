//! Our own client certificate is checked before anything is uploaded:
//! expired, not yet valid or with a key that does not match, the real
//! `ship-episode` and `ship-scanner` exit 78 naming the file and the date,
//! and leave every episode where it was.
//!
//! The receiver URL points at a listener of ours that never answers: any
//! connection (an upload attempt) is queued by the kernel and seen by
//! `accept`, so "nothing was uploaded" is checked, not assumed.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SHIP_EPISODE: &str = env!("CARGO_BIN_EXE_ship-episode");
const SHIP_SCANNER: &str = env!("CARGO_BIN_EXE_ship-scanner");

/// 2024-03-01 12:00 UTC
const LONG_AGO: u64 = 1_709_294_400;
const DAY: u64 = 86_400;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client certificate for `key`, valid from `not_before` to `not_after`
/// (unix seconds), signed by a throwaway CA.
fn client_cert(key: &rcgen::KeyPair, not_before: u64, not_after: u64) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = rcgen::CertificateParams::new(vec!["lab-7".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lab-7");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    params.signed_by(key, &issuer).expect("sign").pem()
}

/// A lab host: a data root with one ready episode and one quarantined
/// one, a client certificate and key, and a receiver that notices any
/// connection.
struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    listener: TcpListener,
}

impl Host {
    fn new(cert_pem: &str, key_pem: &str) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let ready = data.join("episodes/ep-1");
        fs::create_dir_all(&ready).expect("mkdir");
        fs::write(ready.join("frames.bin"), vec![7u8; 4096]).expect("write");
        fs::write(ready.join("done.marker"), b"").expect("marker");
        let quarantined = data.join("quarantine/q-1");
        fs::create_dir_all(&quarantined).expect("mkdir");
        fs::write(quarantined.join("done.marker"), b"").expect("marker");

        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client.key");
        fs::write(&cert, cert_pem).expect("cert");
        fs::write(&key, key_pem).expect("key");

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let config = dir.path().join("lab-host.toml");
        fs::write(
            &config,
            format!(
                "host_id = \"lab-7\"\n\
                 [metrics]\ntextfile = \"\"\n\
                 [paths]\ndata_root = \"{}\"\n\
                 [receiver]\nurl = \"https://127.0.0.1:{port}\"\n\
                 client_cert = \"{}\"\nclient_key = \"{}\"\n\
                 [shipper]\nscan_interval_s = 0.2\nrequest_timeout_s = 5\n",
                data.display(),
                cert.display(),
                key.display()
            ),
        )
        .expect("config");
        Host {
            dir,
            config,
            cert,
            key,
            listener,
        }
    }

    fn data(&self, rel: &str) -> PathBuf {
        self.dir.path().join("data").join(rel)
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.arg("--config")
            .arg(&self.config)
            .env_remove("CIS490_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("FAILPOINTS")
            .env("RUST_LOG", "info");
        c
    }

    /// Run to the end, or kill it after 20 s (the scanner daemon that
    /// does not refuse to start would run for ever).
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let mut child = self
            .command(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().expect("try_wait").is_none() {
            let _ = child.kill();
        }
        child.wait_with_output().expect("wait")
    }

    /// Nobody connected to the receiver, and every episode is where it was.
    fn assert_untouched(&self, what: &str) {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: {peer} connected to the receiver"),
            Err(e) => panic!("{what}: accept: {e}"),
        }
        assert!(
            self.data("episodes/ep-1/done.marker").is_file(),
            "{what}: the ready episode moved"
        );
        assert!(
            self.data("quarantine/q-1/done.marker").is_file(),
            "{what}: the quarantined episode moved"
        );
        assert!(
            !self.data("quarantine/ep-1").exists(),
            "{what}: the ready episode was quarantined"
        );
        for dir in ["outbox", "shipped"] {
            let entries = fs::read_dir(self.data(dir)).map(|d| d.count()).unwrap_or(0);
            assert_eq!(entries, 0, "{what}: something is in {dir}/");
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every way of running the shippers: ready episodes (the path unit), a
/// named one, a requeue, one scanner pass, the scanner daemon.
const MODES: [(&str, &[&str]); 5] = [
    (SHIP_EPISODE, &[]),
    (SHIP_EPISODE, &["ep-1"]),
    (SHIP_EPISODE, &["--requeue", "q-1"]),
    (SHIP_SCANNER, &["--once"]),
    (SHIP_SCANNER, &[]),
];

#[test]
fn an_expired_certificate_uploads_nothing_in_any_mode() {
    let key = rcgen::KeyPair::generate().expect("key");
    let host = Host::new(
        &client_cert(&key, LONG_AGO - 365 * DAY, LONG_AGO),
        &key.serialize_pem(),
    );
    for (bin, args) in MODES {
        let what = format!("{bin} {args:?}");
        let out = host.run(bin, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{what}: {err}");
        let expected = format!(
            "receiver.client_cert {} expired on 2024-03-01 12:00 UTC: renew it",
            host.cert.display()
        );
        assert!(err.contains(&expected), "{what}: {err}");
        assert!(
            err.contains("systemctl restart cis490-ship-scanner"),
            "{what}: {err}"
        );
        host.assert_untouched(&what);
    }
}

#[test]
fn a_key_that_does_not_match_uploads_nothing() {
    let key = rcgen::KeyPair::generate().expect("key");
    let other = rcgen::KeyPair::generate().expect("key");
    let now = now();
    let host = Host::new(
        &client_cert(&key, now - DAY, now + 300 * DAY),
        &other.serialize_pem(),
    );
    for (bin, args) in MODES {
        let what = format!("{bin} {args:?}");
        let out = host.run(bin, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{what}: {err}");
        let expected = format!(
            "receiver.client_key {} does not match the certificate in receiver.client_cert {} \
             (CN=lab-7)",
            host.key.display(),
            host.cert.display()
        );
        assert!(err.contains(&expected), "{what}: {err}");
        // The key itself never shows.
        let body = other.serialize_pem();
        let secret_line = body.lines().nth(1).expect("pem body");
        assert!(!err.contains(secret_line), "{what}: key material in {err}");
        host.assert_untouched(&what);
    }
}

#[test]
fn a_certificate_not_yet_valid_uploads_nothing() {
    let key = rcgen::KeyPair::generate().expect("key");
    let from = now() + 30 * DAY;
    let host = Host::new(
        &client_cert(&key, from, from + 365 * DAY),
        &key.serialize_pem(),
    );
    let out = host.run(SHIP_EPISODE, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "receiver.client_cert {} is not valid before",
            host.cert.display()
        )) && err.contains("timedatectl"),
        "{err}"
    );
    host.assert_untouched("not yet valid");
}

/// The certificate expires while the scanner runs: the next pass uploads
/// nothing and the scanner exits 78, like a start would.
#[test]
fn the_scanner_stops_when_its_certificate_expires() {
    let key = rcgen::KeyPair::generate().expect("key");
    let start = now();
    let not_after = start + 3;
    let host = Host::new(
        &client_cert(&key, start - DAY, not_after),
        &key.serialize_pem(),
    );
    // Nothing to ship while the certificate is valid.
    fs::remove_dir_all(host.data("episodes/ep-1")).expect("rm");
    let log = host.dir.path().join("scanner.log");
    let mut scanner: Child = host
        .command(SHIP_SCANNER)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn scanner");
    let ready_at = Instant::now() + Duration::from_secs(2);
    while Instant::now() < ready_at
        && !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("started")
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        scanner.try_wait().expect("try_wait").is_none(),
        "the scanner did not start: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    // Once it has expired, an episode arrives.
    while now() <= not_after {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = host.data("episodes/ep-1");
    fs::create_dir_all(&ready).expect("mkdir");
    fs::write(ready.join("done.marker"), b"").expect("marker");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = scanner.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = scanner.kill();
        let _ = scanner.wait();
    }
    let err = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{err}");
    assert!(err.contains("started"), "{err}");
    assert!(
        err.contains(&format!(
            "receiver.client_cert {} expired on",
            host.cert.display()
        )),
        "{err}"
    );
    host.assert_untouched("expired while running");
}

/// A valid certificate and key are not refused (the check is not simply
/// "refuse mutual TLS"): the upload is attempted.
#[test]
fn a_valid_certificate_goes_on_to_upload() {
    let key = rcgen::KeyPair::generate().expect("key");
    let now = now();
    let host = Host::new(
        &client_cert(&key, now - DAY, now + 300 * DAY),
        &key.serialize_pem(),
    );
    let mut child = host
        .command(SHIP_EPISODE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let connected = loop {
        match host.listener.accept() {
            Ok(_) => break true,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        connected,
        "no upload was attempted with a valid certificate"
    );
}
