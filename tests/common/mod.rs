//! Shared integration-test support: a real dev receiver process on a real
//! loopback socket (alone, or behind a stock nginx), throwaway TLS
//! material, temporary data roots, a real unix datagram socket as
//! `NOTIFY_SOCKET`, and handles on spawned binaries.
// Each test binary uses a different subset of these items and re-exports.
#![allow(dead_code, unused_imports)]

mod nginx;
mod pki;
mod process;
mod receiver;
mod s3;
mod smallfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use nginx::{Logged, Nginx};
pub use pki::Pki;
pub use process::{NotifySocket, Proc, spawn, wait_exit, wait_until, wait_with_limit};
pub use receiver::{Receiver, Request};
pub use s3::{BUCKET, CountingProxy, Moto};
pub use smallfs::{SmallFs, record, site_on};

pub const SHIP_EPISODE: &str = env!("CARGO_BIN_EXE_ship-episode");
pub const QUARANTINE_PRUNE: &str = env!("CARGO_BIN_EXE_quarantine-prune");

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
                "host_id = \"{}\"\n[metrics]\ntextfile = \"{}\"\n\
                 [paths]\ndata_root = \"{}\"\n[receiver]\n{receiver}\n\
                 [shipper]\n{shipper}\n{extra}",
                self.host,
                self.metrics_file().display(),
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

    /// Where the binaries write the metrics (never the host's node_exporter
    /// directory).
    pub fn metrics_file(&self) -> PathBuf {
        self.dir.path().join("cis490.prom")
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

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Wall-clock time in Unix seconds, as the retry files record it.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
