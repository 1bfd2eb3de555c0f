//! One way to list a state directory: a single readdir, each entry's type
//! from d_type (a symlink is never followed), hidden names told apart.
//! [`Layout::list`](super::Layout::list),
//! [`Layout::unshippable_ready`](super::Layout::unshippable_ready) and prune
//! all read their directories through [`read_state_dir`].

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::EpisodeId;

/// An entry's type as readdir reports it, without following a symlink: a
/// link is neither a directory nor a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Dir,
    File,
    Symlink,
    /// FIFO, socket, device.
    Other,
    /// The type could not be read (the entry vanished meanwhile).
    Unknown,
}

/// One entry of a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    /// As found: not necessarily UTF-8.
    pub name: OsString,
    pub kind: EntryType,
}

impl ListedEntry {
    /// Names starting with `.`: staging (`.in-`), set aside (`.rejected-`),
    /// being deleted (`.deleting-`). Never an episode, and skipped by the
    /// path unit's glob.
    pub fn is_hidden(&self) -> bool {
        self.name.as_bytes().starts_with(b".")
    }

    /// For a directory that is not hidden: its episode id, or why its name
    /// is not one. `None` for anything else.
    pub fn episode_dir(&self) -> Option<Result<EpisodeId, String>> {
        if self.kind != EntryType::Dir || self.is_hidden() {
            return None;
        }
        Some(EpisodeId::from_os(&self.name))
    }
}

/// Every entry of `dir`, in readdir order; `Ok(None)` when `dir` does not
/// exist. Only `dir` itself is read (d_type: no stat per entry).
pub fn read_state_dir(dir: &Path) -> io::Result<Option<Vec<ListedEntry>>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry?;
        // DirEntry::file_type never follows a symlink.
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => EntryType::Dir,
            Ok(t) if t.is_file() => EntryType::File,
            Ok(t) if t.is_symlink() => EntryType::Symlink,
            Ok(_) => EntryType::Other,
            Err(_) => EntryType::Unknown,
        };
        listed.push(ListedEntry {
            name: entry.file_name(),
            kind,
        });
    }
    Ok(Some(listed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;

    #[test]
    fn types_hidden_names_and_episode_dirs() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path();
        fs::create_dir(dir.join("ep")).expect("mkdir");
        fs::create_dir(dir.join(".deleting-ep")).expect("mkdir");
        fs::create_dir(dir.join("bad.json")).expect("mkdir");
        fs::create_dir(dir.join(OsStr::from_bytes(b"not-utf8-\xff"))).expect("mkdir");
        fs::write(dir.join("ep.json"), b"{}").expect("write");
        fs::write(dir.join(".hidden.json"), b"{}").expect("write");
        symlink(dir.join("ep"), dir.join("link")).expect("symlink");

        let mut listed = read_state_dir(dir).expect("list").expect("exists");
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let seen: Vec<_> = listed
            .iter()
            .map(|e| {
                let dir = match e.episode_dir() {
                    None => "-".to_string(),
                    Some(Ok(id)) => format!("id {id}"),
                    Some(Err(_)) => "rejected".to_string(),
                };
                (
                    e.name.to_string_lossy().into_owned(),
                    e.kind,
                    e.is_hidden(),
                    dir,
                )
            })
            .collect();
        let row =
            |name: &str, kind, hidden, dir: &str| (name.to_string(), kind, hidden, dir.to_string());
        assert_eq!(
            seen,
            [
                row(".deleting-ep", EntryType::Dir, true, "-"),
                row(".hidden.json", EntryType::File, true, "-"),
                row("bad.json", EntryType::Dir, false, "rejected"),
                row("ep", EntryType::Dir, false, "id ep"),
                row("ep.json", EntryType::File, false, "-"),
                row("link", EntryType::Symlink, false, "-"),
                row("not-utf8-\u{fffd}", EntryType::Dir, false, "rejected"),
            ]
        );
    }

    #[test]
    fn a_missing_directory_is_none() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_state_dir(&d.path().join("nope")).expect("list"), None);
    }
}
