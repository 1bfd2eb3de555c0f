//! The built binary starts, announces its address and answers on it.
//!
//! Also why `cargo test --workspace` builds the `cis490-dev-receiver`
//! executable (Cargo builds a package's binaries for its integration tests):
//! the shipper's integration tests run it from `target/<profile>/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the receiver when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request on a fresh connection; the whole response as text.
fn exchange(addr: &str, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("read response");
    response
}

/// Start a receiver on a random port with `args`; its `host:port`.
fn start(store: &std::path::Path, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cis490-dev-receiver"))
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dev receiver");
    let stdout = child.stdout.take().expect("stdout");
    let receiver = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (receiver, addr)
}

#[test]
fn starts_and_answers_health_and_refuses_an_upload_without_digest() {
    let store =
        std::env::temp_dir().join(format!("cis490-dev-receiver-smoke-{}", std::process::id()));
    let (receiver, addr) = start(&store, &[]);

    let health = exchange(
        &addr,
        "GET /_control/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let upload = exchange(
        &addr,
        "PUT /episodes/h/e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert!(upload.starts_with("HTTP/1.1 400"), "{upload}");
    assert!(upload.contains("missing content-digest"), "{upload}");

    drop(receiver);
    let _ = std::fs::remove_dir_all(&store);
}

fn head(addr: &str, path: &str) -> String {
    exchange(
        addr,
        &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn head_says_whether_stored_and_a_refusal_rule_refuses_every_method() {
    use base64::Engine as _;
    let store = std::env::temp_dir().join(format!(
        "cis490-dev-receiver-smoke-head-{}",
        std::process::id()
    ));
    let (receiver, addr) = start(&store, &["--behave", "proxied=refuse:400"]);

    let missing = head(&addr, "/episodes/h/e");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // The head only: a HEAD answer has no body.
    assert!(missing.ends_with("\r\n\r\n"), "{missing}");

    let body = b"hello";
    let digest = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body));
    let put = exchange(
        &addr,
        &format!(
            "PUT /episodes/h/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
             Content-Digest: sha-256=:{digest}:\r\nConnection: close\r\n\r\nhello"
        ),
    );
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");
    let stored = head(&addr, "/episodes/h/e");
    assert!(stored.starts_with("HTTP/1.1 200"), "{stored}");
    assert!(stored.contains("Content-Length: 5\r\n"), "{stored}");
    assert!(
        stored.contains(&format!("Repr-Digest: sha-256=:{digest}:\r\n")),
        "{stored}"
    );
    assert!(stored.ends_with("\r\n\r\n"), "{stored}");

    // `refuse:` answers HEAD and PUT alike, before any store check.
    let refused = head(&addr, "/episodes/h/proxied");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(refused.ends_with("\r\n\r\n"), "{refused}");
    let put = exchange(
        &addr,
        "PUT /episodes/h/proxied HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert!(put.starts_with("HTTP/1.1 400"), "{put}");
    assert!(!put.contains("content-digest"), "{put}");

    let other = exchange(
        &addr,
        "GET /episodes/h/e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(other.starts_with("HTTP/1.1 405"), "{other}");
    assert!(other.contains("Allow: PUT, HEAD\r\n"), "{other}");

    drop(receiver);
    let _ = std::fs::remove_dir_all(&store);
}
