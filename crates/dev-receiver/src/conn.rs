//! A client connection: plain TCP or rustls over TCP, with a small read buffer for headers.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How long to keep draining after an early answer (see `graceful_close`).
const DRAIN_FOR: Duration = Duration::from_secs(2);

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Complete the TLS handshake (so handshake failures are reported here, not on first read).
    pub fn tls(mut sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Stream> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, sock))))
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            s.flush()?;
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct Conn {
    /// Buffered for header parsing; large body reads bypass the buffer.
    pub r: BufReader<Stream>,
    pub peer: SocketAddr,
}

impl Conn {
    pub fn new(stream: Stream, peer: SocketAddr) -> Self {
        Conn {
            r: BufReader::with_capacity(64 * 1024, stream),
            peer,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.r.get_mut();
        w.write_all(bytes)?;
        w.flush()
    }

    pub fn set_read_timeout(&self, d: Duration) {
        // Only fails for a zero duration.
        let _ = self.r.get_ref().tcp().set_read_timeout(Some(d));
    }

    /// After answering without reading the whole body: half-close our side so the client
    /// sees the response (and EOF) instead of a reset, then read and discard whatever it is
    /// still sending for up to 2 s before closing the socket.
    pub fn graceful_close(mut self) {
        if self.r.get_mut().shutdown_write().is_err() {
            return;
        }
        let deadline = Instant::now() + DRAIN_FOR;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.set_read_timeout(left);
            match self.r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Block without reading until the peer closes or resets the connection,
    /// `stop` is set, or `max` elapses. Used by the `stall` behaviour.
    pub fn wait_peer_gone(&self, stop: &AtomicBool, max: Duration) {
        let fd = self.r.get_ref().tcp().as_raw_fd();
        let deadline = Instant::now() + max;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: pfd is a valid pollfd for the duration of the call; nfds is 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, 500) };
            if rc < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if rc > 0
                && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)
                    != 0
            {
                return;
            }
        }
    }
}
