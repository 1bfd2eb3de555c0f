//! Episode states as directories under `data_root`, and the files beside them.
//!
//! ```text
//! episodes/<id>/             written by the recorder; ready once it holds done.marker
//! outbox/<id>/               claimed: being shipped, or waiting for a retry
//! outbox/<id>.tar.gz         staged archive (written as <id>.tar.gz.partial, then renamed)
//! outbox/<id>.retry.json     retry state: attempts, next attempt, last error
//! shipped/<id>/  + <id>.json shipped (sidecar: when, status, digest)
//! quarantine/<id>/ + <id>.json refused by the receiver (sidecar: when, why)
//! ```
//!
//! An episode's state is where its directory is, and every state change is
//! one `rename(2)` within `data_root` (RENAME_NOREPLACE, so nothing is ever
//! overwritten). Sidecars are written before the rename that they describe:
//! a crash in between leaves a sidecar without an episode, which is harmless
//! and pruned later.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

mod listing;
mod state_files;
pub use listing::{EntryType, ListedEntry, read_state_dir};
pub use state_files::{DirIdentity, MultipartProgress, RetryState, Sidecar, UploadedPart};
pub(crate) use state_files::{read_json, write_json};

pub const DONE_MARKER: &str = "done.marker";
pub const ARCHIVE_SUFFIX: &str = ".tar.gz";
pub const PARTIAL_SUFFIX: &str = ".tar.gz.partial";
pub const RETRY_SUFFIX: &str = ".retry.json";
pub const SIDECAR_SUFFIX: &str = ".json";
/// Longest accepted episode id, in bytes (well under NAME_MAX with suffixes).
pub const MAX_ID_LEN: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot move {from} to {to}: the destination already exists")]
    Exists { from: PathBuf, to: PathBuf },
    #[error("{path}: corrupt state file: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl LayoutError {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> LayoutError {
        LayoutError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A validated episode id: a plain directory name, safe to join to a path
/// and to put in a URL path segment (after percent-encoding).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpisodeId(String);

impl EpisodeId {
    /// Why a name is not an episode id, or the id.
    pub fn parse(name: &str) -> Result<EpisodeId, String> {
        if name.is_empty() {
            return Err("empty name".into());
        }
        if name.len() > MAX_ID_LEN {
            return Err(format!("longer than {MAX_ID_LEN} bytes"));
        }
        if name.starts_with('.') {
            return Err("starts with '.'".into());
        }
        if name.contains('/') {
            return Err("contains '/'".into());
        }
        if name.chars().any(|c| c.is_control()) {
            return Err("contains control characters".into());
        }
        // These would collide with the files kept beside episode directories.
        for suffix in [ARCHIVE_SUFFIX, PARTIAL_SUFFIX, SIDECAR_SUFFIX] {
            if name.ends_with(suffix) {
                return Err(format!("ends with reserved suffix {suffix:?}"));
            }
        }
        Ok(EpisodeId(name.to_string()))
    }

    /// From a directory entry name, which may not even be UTF-8.
    pub fn from_os(name: &std::ffi::OsStr) -> Result<EpisodeId, String> {
        match name.to_str() {
            Some(s) => EpisodeId::parse(s),
            None => Err("not valid UTF-8".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state an episode is in: the directory that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In `episodes/` (ready or still being recorded).
    Episodes,
    Outbox,
    Shipped,
    Quarantine,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Episodes,
        State::Outbox,
        State::Shipped,
        State::Quarantine,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            State::Episodes => "episodes",
            State::Outbox => "outbox",
            State::Shipped => "shipped",
            State::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// Paths of everything under one data root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_dir(&self, state: State) -> PathBuf {
        self.root.join(state.dir_name())
    }

    pub fn episode_dir(&self, state: State, id: &EpisodeId) -> PathBuf {
        self.state_dir(state).join(id.as_str())
    }

    pub fn archive(&self, id: &EpisodeId) -> PathBuf {
        self.sibling(State::Outbox, id, ARCHIVE_SUFFIX)
    }

    pub fn partial_archive(&self, id: &EpisodeId) -> PathBuf {
        self.sibling(State::Outbox, id, PARTIAL_SUFFIX)
    }

    pub fn retry_file(&self, id: &EpisodeId) -> PathBuf {
        self.sibling(State::Outbox, id, RETRY_SUFFIX)
    }

    /// Sidecar of a settled episode (`shipped/<id>.json`, `quarantine/<id>.json`).
    pub fn sidecar(&self, state: State, id: &EpisodeId) -> PathBuf {
        self.sibling(state, id, SIDECAR_SUFFIX)
    }

    fn sibling(&self, state: State, id: &EpisodeId, suffix: &str) -> PathBuf {
        self.state_dir(state)
            .join(format!("{}{suffix}", id.as_str()))
    }

    /// Create the state directories that are missing.
    pub fn ensure_dirs(&self) -> Result<(), LayoutError> {
        for state in State::ALL {
            let dir = self.state_dir(state);
            fs::create_dir_all(&dir).map_err(|e| LayoutError::io("cannot create", &dir, e))?;
        }
        Ok(())
    }

    /// Where the episode is now, looking in every state directory.
    pub fn locate(&self, id: &EpisodeId) -> Option<State> {
        State::ALL.into_iter().find(|s| {
            fs::symlink_metadata(self.episode_dir(*s, id)).is_ok_and(|m| m.file_type().is_dir())
        })
    }

    /// Episode directories in one state, sorted by id. Names that are not
    /// valid ids are returned separately so the caller can warn about them.
    /// Only the state directory itself is listed, never the episode trees.
    pub fn list(&self, state: State) -> Result<Listing, LayoutError> {
        let dir = self.state_dir(state);
        let mut listing = Listing::default();
        let Some(entries) =
            read_state_dir(&dir).map_err(|e| LayoutError::io("cannot list", &dir, e))?
        else {
            return Ok(listing);
        };
        for entry in entries {
            // Only directories are episodes; hidden ones are not worth a warning.
            match entry.episode_dir() {
                Some(Ok(id)) => listing.ids.push(id),
                Some(Err(why)) => listing
                    .rejected
                    .push((entry.name.to_string_lossy().into_owned(), why)),
                None => {}
            }
        }
        listing.ids.sort();
        Ok(listing)
    }

    /// Entries of `episodes/` that the path unit's glob
    /// (`episodes/*/done.marker`, which follows symlinks and matches any
    /// file type) may match, but that will never be shipped: invalid names,
    /// symlinks, a `done.marker` that is not a regular file. Left in place
    /// they would re-trigger the path unit forever. Returns (name, why).
    pub fn unshippable_ready(&self) -> Result<Vec<(std::ffi::OsString, String)>, LayoutError> {
        let dir = self.state_dir(State::Episodes);
        let Some(entries) =
            read_state_dir(&dir).map_err(|e| LayoutError::io("cannot list", &dir, e))?
        else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries {
            // glob(3)'s `*` skips hidden names: those never trigger.
            if entry.is_hidden() {
                continue;
            }
            let name = entry.name;
            // A symlink is never shipped, and whether its target holds a
            // done.marker may look different to systemd than to us (the
            // service has a private /tmp): set every one aside.
            if entry.kind == EntryType::Symlink {
                found.push((name, "a symlink (never followed)".to_string()));
                continue;
            }
            // What the glob sees: a stat of NAME/done.marker.
            if fs::metadata(dir.join(&name).join(DONE_MARKER)).is_err() {
                continue;
            }
            let why = match EpisodeId::from_os(&name) {
                Err(why) => format!("not a valid episode id ({why})"),
                Ok(id) if !self.is_ready(&id) => format!("{DONE_MARKER} is not a regular file"),
                Ok(_) => continue,
            };
            found.push((name, why));
        }
        Ok(found)
    }

    /// Move `episodes/<name>` to a hidden `episodes/.rejected-<name>`: out
    /// of the path unit's glob, nothing deleted, for an operator to look at.
    pub fn set_aside(&self, name: &std::ffi::OsStr) -> Result<PathBuf, LayoutError> {
        let dir = self.state_dir(State::Episodes);
        let mut hidden = b".rejected-".to_vec();
        // Keep within NAME_MAX (255) with room for a suffix.
        hidden.extend(name.as_bytes().iter().take(200));
        let mut to = dir.join(std::ffi::OsStr::from_bytes(&hidden));
        if fs::symlink_metadata(&to).is_ok() {
            hidden.extend(format!("-{}-{}", unix_now(), std::process::id()).as_bytes());
            to = dir.join(std::ffi::OsStr::from_bytes(&hidden));
        }
        rename_noreplace(&dir.join(name), &to)?;
        Ok(to)
    }

    /// True when `episodes/<id>/done.marker` exists (without following links).
    pub fn is_ready(&self, id: &EpisodeId) -> bool {
        fs::symlink_metadata(self.episode_dir(State::Episodes, id).join(DONE_MARKER))
            .is_ok_and(|m| m.file_type().is_file())
    }
}

#[derive(Debug, Default)]
pub struct Listing {
    pub ids: Vec<EpisodeId>,
    /// (name, reason) of directories skipped because their name is not an id.
    pub rejected: Vec<(String, String)>,
}

/// rename(2) that never replaces an existing destination.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<(), LayoutError> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| LayoutError::io("invalid path", p, io::ErrorKind::InvalidInput.into()))
    };
    let (cf, ct) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated C strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cf.as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Err(LayoutError::Exists {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        }),
        _ => Err(LayoutError::io("cannot rename", from, err)),
    }
}

/// fsync a directory so that renames inside it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| LayoutError::io("cannot fsync", dir, e))
}

/// Write a small file atomically: temp file, fsync, rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    write_atomic_via(path, bytes, &PathBuf::from(tmp))
}

/// The temp name of a file that only the holder of its episode's lock
/// writes: fixed (pid 0, never a process), so that the next writer
/// replaces what a killed one left, and prune knows it as a temp file.
pub fn locked_temp(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp0");
    PathBuf::from(tmp)
}

/// [`write_atomic`] through the temp file `tmp`.
pub fn write_atomic_via(path: &Path, bytes: &[u8], tmp: &Path) -> Result<(), LayoutError> {
    let tmp = tmp.to_path_buf();
    let result = (|| {
        let mut f = match create_new_nofollow(&tmp) {
            // Left by an earlier process with our pid: never ours to trust.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create_new_nofollow(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        LayoutError::io("cannot write", path, e)
    })
}

/// Create a file that must not exist yet, never through a symlink: for
/// every predictable name the shipper writes beside the episodes.
pub fn create_new_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o640)
        .open(path)
}

/// Open a regular file for reading, never through a symlink and never
/// blocking on a FIFO planted under a predictable name.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

pub fn remove_if_present(path: &Path) -> Result<(), LayoutError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LayoutError::io("cannot remove", path, e)),
    }
}

pub fn unix_now() -> u64 {
    unix_secs(SystemTime::now())
}

/// Unix seconds, rounded up: for "not before" times.
pub fn unix_secs_ceil(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_ids() {
        assert!(EpisodeId::parse("2026-11-27T10-00-00_arm3").is_ok());
        assert!(EpisodeId::parse("with space and ünïcode").is_ok());
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "tab\there",
            "x.tar.gz",
            "x.json",
            "x.tar.gz.partial",
        ] {
            assert!(EpisodeId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(EpisodeId::parse(&"a".repeat(MAX_ID_LEN)).is_ok());
        assert!(EpisodeId::parse(&"a".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn rename_noreplace_never_clobbers() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir(&a).expect("mkdir a");
        fs::create_dir(&b).expect("mkdir b"); // empty: plain rename(2) would replace it
        assert!(matches!(
            rename_noreplace(&a, &b),
            Err(LayoutError::Exists { .. })
        ));
        assert!(a.is_dir());
        fs::remove_dir(&b).expect("rmdir");
        rename_noreplace(&a, &b).expect("rename");
        assert!(!a.exists() && b.is_dir());
    }

    #[test]
    fn listing_skips_files_hidden_and_bad_names() {
        let d = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(d.path());
        layout.ensure_dirs().expect("dirs");
        let eps = layout.state_dir(State::Outbox);
        for name in ["b", "a", ".tmp", "bad.tar.gz"] {
            fs::create_dir(eps.join(name)).expect("mkdir");
        }
        fs::write(eps.join("a.tar.gz"), b"x").expect("file");
        let l = layout.list(State::Outbox).expect("list");
        let ids: Vec<_> = l.ids.iter().map(|i| i.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(l.rejected.len(), 1);
        assert_eq!(l.rejected[0].0, "bad.tar.gz");
    }
}
