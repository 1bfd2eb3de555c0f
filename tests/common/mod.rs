//! Shared helpers for integration tests: a temporary data root with its
//! config, a small real HTTP receiver with per-episode behaviour, a real
//! `NOTIFY_SOCKET`, and a handle on a spawned binary.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HOST_ID: &str = "lab-test";

/// A temporary data root and a config file pointing at it.
pub struct DataRoot {
    pub dir: tempfile::TempDir,
}

impl DataRoot {
    pub fn new() -> DataRoot {
        DataRoot {
            dir: tempfile::Builder::new()
                .prefix("cis490-t")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn state(&self, state: &str) -> PathBuf {
        self.data().join(state)
    }

    /// Write the config; `shipper` holds extra `[shipper]` lines.
    pub fn write_config(&self, url: &str, shipper: &str) -> PathBuf {
        let path = self.dir.path().join("lab-host.toml");
        let text = format!(
            "host_id = \"{HOST_ID}\"\n\n[paths]\ndata_root = \"{}\"\n\n[receiver]\nurl = \"{url}\"\n\n\
             [shipper]\n{shipper}\n",
            self.data().display()
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// An episode directory in `state` with `bytes` of pseudo-random
    /// (incompressible) content, and done.marker when `ready`.
    pub fn episode(&self, state: &str, id: &str, bytes: usize, ready: bool) -> PathBuf {
        let dir = self.state(state).join(id);
        std::fs::create_dir_all(&dir).expect("mkdir episode");
        std::fs::write(
            dir.join("data.bin"),
            pseudo_random(bytes, id.len() as u64 + 7),
        )
        .expect("write data");
        if ready {
            std::fs::write(dir.join("done.marker"), b"").expect("write marker");
        }
        dir
    }

    pub fn names(&self, state: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state(state))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
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

// ---------------------------------------------------------------- receiver

/// What the receiver does with the next upload of an episode.
#[derive(Debug, Clone)]
pub enum Behave {
    /// Store it: 201, or 409 if already stored.
    Accept,
    /// Read the body, answer with this status (and `Retry-After` seconds).
    Status(u16, Option<u64>),
    /// Read the headers, then never read another byte nor answer.
    Stall,
    /// Read the body at this many bytes per second, then accept.
    Slow(u64),
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    /// When the request headers arrived.
    pub at: Instant,
    /// When the answer was sent (None for a stall).
    pub done: Option<Instant>,
    pub status: Option<u16>,
    pub body_bytes: u64,
}

#[derive(Default)]
struct RecvState {
    plans: HashMap<String, VecDeque<Behave>>,
    default: Option<Behave>,
    hits: Vec<Hit>,
    stored: HashMap<String, u64>,
}

/// A minimal HTTP/1.1 receiver on a real socket: PUT /episodes/{host}/{id}.
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<RecvState>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        // A small receive buffer (inherited by accepted sockets) so that a
        // reader that stops reading stalls the sender after a few MB.
        let size: libc::c_int = 64 * 1024;
        // SAFETY: valid fd and option value for the duration of the call.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(RecvState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp) = (st.clone(), sp.clone());
                std::thread::spawn(move || handle(conn, st, sp));
            }
        });
        Receiver { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queue behaviours for the next uploads of `id` (then the default).
    pub fn plan(&self, id: &str, behaviours: &[Behave]) {
        let mut s = self.state.lock().expect("lock");
        s.plans
            .entry(id.to_string())
            .or_default()
            .extend(behaviours.iter().cloned());
    }

    /// What every upload without a plan gets (Accept unless set).
    pub fn set_default(&self, b: Behave) {
        self.state.lock().expect("lock").default = Some(b);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().expect("lock").hits.clone()
    }

    pub fn hits_for(&self, id: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.id == id).collect()
    }

    /// Bytes of the stored upload of `id`.
    pub fn stored(&self, id: &str) -> Option<u64> {
        self.state.lock().expect("lock").stored.get(id).copied()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(conn: TcpStream, state: Arc<Mutex<RecvState>>, stop: Arc<AtomicBool>) {
    let mut reader = BufReader::new(conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let id = request_line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let at = Instant::now();
    let behave = {
        let mut s = state.lock().expect("lock");
        let planned = s.plans.get_mut(&id).and_then(|q| q.pop_front());
        planned
            .or_else(|| s.default.clone())
            .unwrap_or(Behave::Accept)
    };
    let record = |status: Option<u16>, body_bytes: u64| {
        let mut s = state.lock().expect("lock");
        s.hits.push(Hit {
            id: id.clone(),
            at,
            done: status.map(|_| Instant::now()),
            status,
            body_bytes,
        });
    };
    let (status, retry_after, got) = match behave {
        Behave::Stall => {
            record(None, 0);
            while !stop.load(Ordering::Relaxed) && at.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Behave::Status(code, ra) => {
            let got = drain(&mut reader, length, None);
            (code, ra, got)
        }
        Behave::Accept => (0, None, drain(&mut reader, length, None)),
        Behave::Slow(rate) => (0, None, drain(&mut reader, length, Some(rate))),
    };
    let status = if status != 0 {
        status
    } else if got != length {
        400
    } else {
        let mut s = state.lock().expect("lock");
        if s.stored.contains_key(&id) {
            409
        } else {
            s.stored.insert(id.clone(), got);
            201
        }
    };
    let mut conn = reader.into_inner();
    let body = format!("status {status}\n");
    let ra = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{ra}\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
    record(Some(status), got);
}

fn drain(reader: &mut BufReader<TcpStream>, length: u64, rate: Option<u64>) -> u64 {
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    while got < length {
        let want = buf.len().min((length - got) as usize);
        let want = match rate {
            Some(r) => want.min((r / 20).max(1) as usize),
            None => want,
        };
        match reader.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(got as f64 / r as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    got
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
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
