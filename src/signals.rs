//! SIGTERM/SIGINT as a flag that long-running loops poll.
//!
//! The handler only stores to an atomic (async-signal-safe); the scanner
//! checks the flag between episodes, between sleep slices and on every
//! upload progress tick. [`StateWrite`] guards a settle against a forced
//! exit after a stop request.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Set once SIGTERM or SIGINT arrived.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Route SIGTERM and SIGINT to [`STOP`] instead of killing the process.
pub fn install_stop_handler() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler is an extern "C"
        // fn that only performs an atomic store.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// In-flight writes of episode state (a settle, a sidecar, a retry file).
static STATE_WRITES: AtomicUsize = AtomicUsize::new(0);
/// Set by [`exit_between_state_writes`]: no new state write may start.
static EXITING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's nesting depth of [`StateWrite`] guards.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Held while episode state is being written: a forced exit after SIGTERM
/// waits for it (like bootupd's termination guard), so that a settle is
/// done or not started, never half done. Every step is crash-safe anyway;
/// this only keeps a clean stop clean.
pub struct StateWrite(());

impl StateWrite {
    pub fn begin() -> StateWrite {
        let nested = DEPTH.with(|d| d.get()) > 0;
        STATE_WRITES.fetch_add(1, Ordering::SeqCst);
        // A new write waits for the exit that is under way; a nested one
        // is part of a write the exit already waits for.
        if !nested && EXITING.load(Ordering::SeqCst) {
            STATE_WRITES.fetch_sub(1, Ordering::SeqCst);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        DEPTH.with(|d| d.set(d.get() + 1));
        StateWrite(())
    }
}

impl Drop for StateWrite {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        STATE_WRITES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Exit with `code` once no state write is in flight, or after `limit`
/// (a hung disk must not block the stop: the next start recovers).
pub fn exit_between_state_writes(code: i32, limit: Duration) -> ! {
    EXITING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + limit;
    while STATE_WRITES.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if STATE_WRITES.load(Ordering::SeqCst) > 0 {
        tracing::warn!(
            "a state write is still in flight {:.1}s later: exiting anyway (the next start \
             finishes it)",
            limit.as_secs_f64()
        );
    }
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_waits_for_the_state_write_in_flight() {
        // The exit itself cannot run in a test process; check the counting
        // that it relies on, nesting included.
        assert_eq!(STATE_WRITES.load(Ordering::SeqCst), 0);
        let outer = StateWrite::begin();
        let inner = StateWrite::begin();
        assert_eq!(STATE_WRITES.load(Ordering::SeqCst), 2);
        drop(inner);
        assert_eq!(STATE_WRITES.load(Ordering::SeqCst), 1);
        let other = std::thread::spawn(|| {
            let _w = StateWrite::begin();
            STATE_WRITES.load(Ordering::SeqCst)
        })
        .join()
        .expect("thread");
        assert_eq!(other, 2);
        drop(outer);
        assert_eq!(STATE_WRITES.load(Ordering::SeqCst), 0);
    }
}
