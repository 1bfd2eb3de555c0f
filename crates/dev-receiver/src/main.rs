//! cis490-dev-receiver: a test/demo/benchmark implementation of the episode receiver.
//!
//! Never installed on lab hosts. Speaks just enough HTTP/1.1 (optionally over rustls)
//! to accept `PUT /episodes/{host_id}/{episode_id}` uploads, verify their
//! `Content-Digest`, and store them; can misbehave on purpose for tests.

mod auth;
mod behave;
mod body;
mod conn;
mod control;
mod digest;
mod handler;
mod head;
mod http;
mod stats;
mod tls;
mod upload;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::behave::Rules;
use crate::conn::{Conn, Stream};
use crate::handler::Shared;
use crate::stats::Stats;

const AFTER_HELP: &str = "\
BEHAVIOUR SPECS (for --behave ID=SPEC and PUT /_control/behave/{ID}):
  ID is an episode id, a host_id/episode_id pair, or * (every episode without a specific rule).
  status:NNN[,retry-after:S]       read the whole body, then answer NNN (optionally with Retry-After)
  close-early:NNN[,retry-after:S]  answer NNN right after the headers without reading the body,
                                   then half-close and drain for up to 2 s
  stall                            read ~64 KiB of the body, then stop reading and never answer
  slow:BYTES_PER_SEC               read the body at that rate (suffix k/M/G = KiB/MiB/GiB), then store
  normal                           store normally (e.g. to exempt an id from a * rule)
  once:SPEC                        apply SPEC to the next request for that id only, then clear it
  times:N:SPEC                     apply SPEC to the next N requests for that id, then clear it

CONTROL ENDPOINTS (unauthenticated; for loopback testing only, disable with --no-control):
  GET    /_control/health          200 ok
  GET    /_control/stats           {\"puts\":{..},\"stored\":[..],\"responses\":{..},\"requests\":[..]} as JSON
  DELETE /_control/stats           reset puts/responses/requests (the store is untouched)
  GET    /_control/behave          list active rules
  PUT    /_control/behave/{ID}     body = SPEC; set a rule
  DELETE /_control/behave/{ID}     clear a rule";

/// Dev/test/benchmark receiver for cis490 episode uploads (never installed on lab hosts).
///
/// The /_control endpoints are unauthenticated and meant for loopback testing only.
#[derive(Parser, Debug)]
#[command(name = "cis490-dev-receiver", version, after_help = AFTER_HELP)]
struct Cli {
    /// Address to listen on; port 0 picks a free port. The bound address is printed
    /// as the first stdout line: `listening on http(s)://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,

    /// Directory to store episodes in (<store>/<host_id>/<episode_id>.tar.gz).
    #[arg(long, value_name = "DIR")]
    store: PathBuf,

    /// Also write the bound port (just the number) to this file.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// Private key for --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (mutual TLS). Needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,

    /// Require `Authorization: Bearer <token>` on uploads; the file holds the token
    /// (surrounding whitespace ignored). The control endpoints are not covered.
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,

    /// Inject a behaviour for an episode id (repeatable), see BEHAVIOUR SPECS below.
    #[arg(long, value_name = "ID=SPEC")]
    behave: Vec<String>,

    /// Disable the /_control endpoints.
    #[arg(long)]
    no_control: bool,

    /// Give up on a client that sends nothing for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    read_timeout: u64,

    /// Fixed socket receive buffer (SO_RCVBUF) for every connection, instead of
    /// the kernel's autotuning (which may grow to tens of MiB on loopback). A small
    /// one makes `stall` and `slow` push back on the client within a few MiB.
    #[arg(long, value_name = "BYTES")]
    recv_buffer: Option<u32>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

fn write_port_file(path: &PathBuf, port: u16) -> Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, port.to_string())
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// SO_RCVBUF on the listener, inherited by accepted sockets (it must be set
/// before the connection is established to bound the TCP window).
fn set_recv_buffer(listener: &TcpListener, size: u32) -> Result<()> {
    let size = libc::c_int::try_from(size).context("--recv-buffer too large")?;
    // SAFETY: valid fd, and a pointer to a c_int of the given length for the call.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting SO_RCVBUF");
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();

    let mut rules = Rules::default();
    for a in &cli.behave {
        let (id, rule) = behave::parse_assignment(a)?;
        rules.set(id, rule);
    }
    let token_hash = match &cli.bearer_token_file {
        None => None,
        Some(p) => {
            let raw = std::fs::read_to_string(p)
                .with_context(|| format!("reading bearer token file {}", p.display()))?;
            let token = raw.trim();
            if token.is_empty() {
                bail!("bearer token file {} is empty", p.display());
            }
            Some(digest::sha256(token.as_bytes()))
        }
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k, cli.client_ca.as_deref())?),
        _ => None,
    };
    std::fs::create_dir_all(&cli.store)
        .with_context(|| format!("creating store {}", cli.store.display()))?;

    let listener =
        TcpListener::bind(cli.listen).with_context(|| format!("binding {}", cli.listen))?;
    if let Some(size) = cli.recv_buffer {
        set_recv_buffer(&listener, size)?;
    }
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    if let Some(p) = &cli.port_file {
        write_port_file(p, addr.port())?;
    }
    if !cli.no_control && !addr.ip().is_loopback() {
        eprintln!(
            "warning: /_control endpoints are enabled on a non-loopback address; use --no-control"
        );
    }
    eprintln!(
        "store {} | tls {} | client certs {} | bearer token {} | control {} | rules {:?}",
        cli.store.display(),
        tls.is_some(),
        cli.client_ca.is_some(),
        token_hash.is_some(),
        !cli.no_control,
        rules.list()
    );

    let shared = Arc::new(Shared {
        store: cli.store.clone(),
        token_hash,
        control: !cli.no_control,
        read_timeout: Duration::from_secs(cli.read_timeout.max(1)),
        rules: Mutex::new(rules),
        stats: Mutex::new(Stats::default()),
        in_progress: Mutex::new(HashSet::new()),
        stop: AtomicBool::new(false),
    });

    install_signal_handlers();
    accept_loop(&listener, &shared, tls);
    shared.stop.store(true, Ordering::Relaxed);
    eprintln!("shutting down");
    Ok(())
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let fd = listener.as_raw_fd();
    while !STOP.load(Ordering::Relaxed) {
        // Poll so that a signal can end the loop promptly.
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is valid for the duration of the call; nfds is 1.
        if unsafe { libc::poll(&mut pfd, 1, 250) } <= 0 {
            continue;
        }
        let (sock, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let shared = Arc::clone(shared);
        let tls = tls.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{peer}"))
            .spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = sock.set_write_timeout(Some(shared.read_timeout));
                let stream = match tls {
                    None => Stream::Plain(sock),
                    Some(cfg) => match Stream::tls(sock, cfg) {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("{peer} TLS handshake failed: {e}");
                            return;
                        }
                    },
                };
                handler::serve(Conn::new(stream, peer), &shared);
            });
        if let Err(e) = spawned {
            eprintln!("{peer} cannot spawn connection thread: {e}");
        }
    }
}
