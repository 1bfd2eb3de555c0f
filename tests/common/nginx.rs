//! A stock nginx in front of a dev receiver, the way a collector is often
//! deployed: TLS with the test PKI, client certificates required
//! (`ssl_verify_client on`), `/episodes/` proxied to the receiver over
//! plain HTTP, the body streamed through (`proxy_request_buffering off`).
//! nginx's own answers to a client it refuses are what the shipper must
//! tell apart from the receiver's: `400 The SSL certificate error`, `400 No
//! required SSL certificate was sent`, `400 The plain HTTP request was sent
//! to HTTPS port`.
//!
//! nginx runs as a child of the test (one process: `master_process off`),
//! with its config, logs, pid file and temp paths in a tempdir, and is
//! stopped on drop. A missing nginx fails the test: it is never skipped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::pki::Pki;
use super::process::{wait_exit, wait_until};

/// Overrides where nginx is taken from.
const NGINX_ENV: &str = "CIS490_NGINX";

/// One request as nginx logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub method: String,
    pub uri: String,
    pub status: u16,
}

/// A running nginx, stopped on drop.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `https://127.0.0.1:PORT`
    pub url: String,
}

fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(NGINX_ENV) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and these tests need a stock nginx in front of the \
                 receiver: install it (Debian: `apt-get install nginx`; scripts/test.sh does) \
                 or point {NGINX_ENV} at one"
            )
        })
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Nginx {
    /// nginx with the PKI's server certificate, requiring client
    /// certificates issued by the PKI's CA, proxying `/episodes/` to
    /// `upstream` (`http://127.0.0.1:PORT`).
    pub fn in_front_of(upstream: &str, pki: &Pki) -> Nginx {
        let bin = nginx_binary();
        let dir = tempfile::Builder::new()
            .prefix("cis490-nginx")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().display();
        let port = free_port();
        let conf = format!(
            "master_process off;
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    log_format refusals '$request_method $request_uri $status';
    access_log {d}/access.log refusals;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {server};
        ssl_certificate_key {server_key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        client_max_body_size 0;
        location /episodes/ {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_request_buffering off;
        }}
    }}
}}
",
            server = pki.path("server.pem").display(),
            server_key = pki.path("server.key").display(),
            ca = pki.path("ca.pem").display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                || child.try_wait().ok().flatten().is_some()
        });
        let exited = child.try_wait().ok().flatten();
        if !up || exited.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            let log =
                |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
            panic!(
                "nginx did not start on 127.0.0.1:{port} ({exited:?}):\n{}{}",
                log("stderr.log"),
                log("error.log")
            );
        }
        Nginx {
            child,
            dir,
            port,
            url: format!("https://127.0.0.1:{port}"),
        }
    }

    /// Every request nginx answered, oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(' ');
                Some(Logged {
                    method: parts.next()?.to_string(),
                    uri: parts.next()?.to_string(),
                    status: parts.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The requests with this method.
    pub fn requests_with(&self, method: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// nginx's error log (why it refused a client certificate, say).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown; SIGKILL if it does not go.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        if wait_exit(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
