//! Spawned binaries: waiting with a limit, a `NOTIFY_SOCKET` to listen on,
//! and long-running processes logging to a file.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
