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

#[test]
fn starts_and_answers_health_and_refuses_an_upload_without_digest() {
    let store =
        std::env::temp_dir().join(format!("cis490-dev-receiver-smoke-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cis490-dev-receiver"))
        .args(["--listen", "127.0.0.1:0", "--store"])
        .arg(&store)
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
