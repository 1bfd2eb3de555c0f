//! Finding things out: one listing per state directory, and the facts that
//! [`decide`](super::decide::decide) asks for (a stat, a sidecar read, a
//! lock attempt). Nothing here changes anything on disk.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::decide::{Candidate, Lock, Seen};
use crate::layout::{self, EntryType, ListedEntry, SIDECAR_SUFFIX, Sidecar, State};
use crate::lock::{self, EpisodeLock, LockError};

/// Sidecars are a few hundred bytes; refuse to read anything big.
const SIDECAR_MAX_BYTES: u64 = 64 * 1024;
/// Deeper than this, the byte count of a tree being deleted stops descending
/// (the removal itself is not limited).
const MAX_COUNT_DEPTH: usize = 128;

/// One state directory's entries, from a single listing (d_type, no stat).
/// Names that are not UTF-8 are not ours (ids are UTF-8): left out.
#[derive(Debug, Default)]
pub struct Scan {
    /// Directories whose name is a valid episode id.
    pub dirs: BTreeSet<String>,
    /// Hidden directories (`.deleting-*` among them).
    pub hidden_dirs: Vec<String>,
    /// Regular files.
    pub files: Vec<String>,
    /// Everything that is not a directory (regular files, links, ...).
    pub non_dirs: BTreeSet<String>,
    /// Directories whose name is not an episode id: left alone, reported.
    pub rejected: Vec<(String, String)>,
}

impl Scan {
    pub fn from_entries(entries: Vec<ListedEntry>) -> Scan {
        let mut scan = Scan::default();
        for entry in entries {
            let Some(name) = entry.name.to_str().map(str::to_string) else {
                continue;
            };
            match (entry.kind, entry.episode_dir()) {
                (EntryType::Unknown, _) => {}
                (EntryType::Dir, None) => scan.hidden_dirs.push(name),
                (EntryType::Dir, Some(Ok(_))) => {
                    scan.dirs.insert(name);
                }
                (EntryType::Dir, Some(Err(why))) => scan.rejected.push((name, why)),
                (EntryType::File, _) => {
                    scan.files.push(name.clone());
                    scan.non_dirs.insert(name);
                }
                (EntryType::Symlink | EntryType::Other, _) => {
                    scan.non_dirs.insert(name);
                }
            }
        }
        scan.hidden_dirs.sort();
        scan.files.sort();
        scan
    }
}

/// List `dir`; `Ok(None)` when it does not exist.
pub fn scan(dir: &Path) -> io::Result<Option<Scan>> {
    Ok(layout::read_state_dir(dir)?.map(Scan::from_entries))
}

/// When an entry entered its state or was last written, with what the
/// removal needs later.
#[derive(Debug)]
pub struct Found {
    pub seen: Seen,
    /// The sidecar's bytes when they gave the time: the sidecar is removed
    /// with its episode only if unchanged (a newcomer with the same id
    /// keeps its own).
    pub sidecar: Option<Vec<u8>>,
    /// A file's allocated size.
    pub bytes: u64,
}

impl Found {
    fn seen(seen: Seen) -> Found {
        Found {
            seen,
            sidecar: None,
            bytes: 0,
        }
    }
}

/// The time `decide` asks for, for `name` in `dir` (`state`'s directory).
pub fn since(dir: &Path, state: State, name: &str, candidate: &Candidate) -> Found {
    let path = dir.join(name);
    match candidate {
        Candidate::Settled { id, sidecar_listed } => {
            entered(dir, state, id, &path, *sidecar_listed)
        }
        // Only reported: any failure counts as age zero.
        Candidate::Deleting { .. } => Found::seen(match fs::symlink_metadata(&path) {
            Ok(m) => Seen::At {
                at: unix_time(m.ctime(), m.ctime_nsec()),
                ctime_because: None,
            },
            Err(e) => Seen::Unreadable(e.to_string()),
        }),
        _ => written(&path),
    }
}

/// The sidecar's `entered_at`, else the directory's ctime (which rename(2)
/// updates, so it is never earlier than the state change).
fn entered(dir: &Path, state: State, id: &str, path: &Path, sidecar_listed: bool) -> Found {
    let sidecar_path = dir.join(format!("{id}{SIDECAR_SUFFIX}"));
    let because = if sidecar_listed {
        match read_small_file(&sidecar_path) {
            Ok(bytes) => match serde_json::from_slice::<Sidecar>(&bytes) {
                Ok(s) if s.episode_id == id && s.state == state => {
                    return Found {
                        seen: Seen::At {
                            at: UNIX_EPOCH + Duration::from_secs(s.entered_at),
                            ctime_because: None,
                        },
                        sidecar: Some(bytes),
                        bytes: 0,
                    };
                }
                Ok(_) => "the sidecar describes another episode or state".to_string(),
                Err(e) => format!("corrupt sidecar ({e})"),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => "no sidecar".to_string(),
            Err(e) => format!("unreadable sidecar ({e})"),
        }
    } else {
        "no sidecar".to_string()
    };
    Found::seen(match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Seen::At {
            at: unix_time(m.ctime(), m.ctime_nsec()),
            ctime_because: Some(because),
        },
        Ok(_) => Seen::Gone,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Seen::Gone,
        Err(e) => Seen::Unreadable(format!("cannot stat {}: {e}", path.display())),
    })
}

/// A regular file's mtime and size; anything else is gone.
fn written(path: &Path) -> Found {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Found {
            seen: Seen::At {
                at: unix_time(m.mtime(), m.mtime_nsec()),
                ctime_because: None,
            },
            sidecar: None,
            bytes: m.blocks() * 512,
        },
        Ok(_) => Found::seen(Seen::Gone),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::seen(Seen::Gone),
        Err(e) => Found::seen(Seen::Unreadable(format!("cannot stat: {e}"))),
    }
}

/// Whether anything is at `path` (not following a symlink).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Try the lock of directory `path`; the guard is held while it lives.
pub fn lock(path: &Path) -> (Lock, Option<EpisodeLock>) {
    match EpisodeLock::acquire(path) {
        Ok(held) => (Lock::Held, Some(held)),
        Err(LockError::Busy(_)) => (Lock::Busy, None),
        Err(LockError::Gone(_)) => (Lock::Gone, None),
        Err(e) => (Lock::Failed(e.to_string()), None),
    }
}

fn unix_time(secs: i64, nsec: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsec.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

/// Read a small regular file without following a symlink or opening a
/// FIFO (O_NOFOLLOW | O_NONBLOCK, then fstat).
pub fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::InvalidData, "is a symlink")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > SIDECAR_MAX_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too big"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(SIDECAR_MAX_BYTES).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Disk space of a tree, as du counts it, never following a symlink: each
/// directory is opened with O_NOFOLLOW and listed through its descriptor
/// (/proc/self/fd), so a directory swapped for a link meanwhile is not
/// entered. Best effort: what cannot be read is not counted.
pub fn tree_bytes(root: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(root) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    meta.blocks() * 512 + dir_bytes(root, 0)
}

fn dir_bytes(dir: &Path, depth: usize) -> u64 {
    if depth >= MAX_COUNT_DEPTH {
        return 0;
    }
    let Ok(handle) = lock::open_dir_nofollow(dir) else {
        return 0;
    };
    let via_fd = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let Ok(entries) = fs::read_dir(&via_fd) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        // DirEntry::metadata is fstatat(AT_SYMLINK_NOFOLLOW).
        let Ok(m) = entry.metadata() else { continue };
        total += m.blocks() * 512;
        if m.is_dir() {
            total += dir_bytes(&via_fd.join(entry.file_name()), depth + 1);
        }
    }
    total
}
