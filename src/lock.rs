//! One worker per episode, across every process.
//!
//! The lock is an exclusive `flock` on the episode directory itself. It
//! belongs to the directory's inode, so it travels with the episode through
//! every rename and leaves no lock files to clean up. Because the episode may
//! have moved between opening and locking, [`EpisodeLock::acquire`] checks
//! afterwards that the path still names the locked inode ("lock, then
//! revalidate").

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct EpisodeLock {
    // Held for its Drop: closing the descriptor releases the flock.
    _dir: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it: skip quietly.
    #[error("{0} is locked by another shipper")]
    Busy(PathBuf),
    /// The path no longer names a directory (moved or removed meanwhile).
    #[error("{0} moved away while waiting for the lock")]
    Gone(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl EpisodeLock {
    /// Take the lock on the directory at `path` without waiting.
    pub fn acquire(path: &Path) -> Result<EpisodeLock, LockError> {
        let dir = match open_dir_nofollow(path) {
            Ok(f) => f,
            Err(e) if is_gone(&e) => return Err(LockError::Gone(path.to_path_buf())),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        match dir.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Busy(path.to_path_buf())),
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        // Revalidate: the holder before us may have renamed it away, and
        // something else may now sit at this path.
        let held = dir.metadata().map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => Ok(EpisodeLock {
                _dir: dir,
                path: path.to_path_buf(),
            }),
            Ok(_) => Err(LockError::Gone(path.to_path_buf())),
            Err(e) if is_gone(&e) => Err(LockError::Gone(path.to_path_buf())),
            Err(source) => Err(LockError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The path the lock was taken at (the episode may have moved since).
    pub fn locked_path(&self) -> &Path {
        &self.path
    }
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

/// Open a directory read-only, refusing symlinks (O_NOFOLLOW) and never
/// blocking (O_NONBLOCK: a FIFO planted at this path must not hang us).
pub fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_lock_follows_rename() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = d.path().join("a");
        std::fs::create_dir(&a).expect("mkdir");
        let held = EpisodeLock::acquire(&a).expect("first lock");
        assert!(matches!(EpisodeLock::acquire(&a), Err(LockError::Busy(_))));
        let b = d.path().join("b");
        std::fs::rename(&a, &b).expect("rename");
        assert!(matches!(EpisodeLock::acquire(&b), Err(LockError::Busy(_))));
        assert!(matches!(EpisodeLock::acquire(&a), Err(LockError::Gone(_))));
        drop(held);
        EpisodeLock::acquire(&b).expect("free again");
    }

    #[test]
    fn symlinked_directory_is_not_locked_through() {
        let d = tempfile::tempdir().expect("tempdir");
        let real = d.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(matches!(
            EpisodeLock::acquire(&link),
            Err(LockError::Gone(_))
        ));
    }
}
