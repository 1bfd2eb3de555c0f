//! SIGTERM/SIGINT as a flag that long-running loops poll.
//!
//! The handler only stores to an atomic (async-signal-safe); the scanner
//! checks the flag between episodes, between sleep slices and on every
//! upload progress tick.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

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
