//! The tree walk: every entry of the episode into the tar stream, in byte
//! order, each reached through its directory's open descriptor.
//!
//! Symlinks are stored as symlinks and never followed; FIFOs, sockets and
//! devices are skipped (reported in [`Walked::skipped`]) and never opened.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::entropy::{ChunkReader, ReadFailure};
use super::{ArchiveError, Skipped};

/// What the walk put into the archive, and what it left out.
pub(super) struct Walked {
    /// File content bytes read.
    pub(super) input_bytes: u64,
    pub(super) entries: u64,
    pub(super) skipped: Vec<Skipped>,
}

/// Append `episode_dir` and everything under it to `builder`, as `top`.
/// `store_hint` is the cell the gzip writer reads to store or deflate;
/// `partial_path` names the archive in write errors.
pub(super) fn walk_episode<W: Write>(
    builder: &mut tar::Builder<W>,
    store_hint: Rc<Cell<bool>>,
    episode_dir: &Path,
    top: &Path,
    on_progress: &mut dyn FnMut(u64),
    partial_path: &Path,
) -> Result<Walked, ArchiveError> {
    let mut walk = Walk {
        builder,
        store_hint,
        input_bytes: 0,
        entries: 0,
        skipped: Vec::new(),
        on_progress,
        partial_path,
    };
    let root_meta =
        fs::symlink_metadata(episode_dir).map_err(|source| ArchiveError::Unreadable {
            path: episode_dir.to_path_buf(),
            source,
        })?;
    walk.directory(episode_dir, episode_dir, top, &root_meta)?;
    Ok(Walked {
        input_bytes: walk.input_bytes,
        entries: walk.entries,
        skipped: walk.skipped,
    })
}

struct Walk<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    store_hint: Rc<Cell<bool>>,
    input_bytes: u64,
    entries: u64,
    skipped: Vec<Skipped>,
    on_progress: &'a mut dyn FnMut(u64),
    partial_path: &'a Path,
}

impl<W: Write> Walk<'_, W> {
    fn write_err(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Write {
            path: self.partial_path.to_path_buf(),
            source,
        }
    }

    /// Archive directory `dir` (shown in errors) as `name`. `via` is how it
    /// is reached: each directory is opened once, without following links,
    /// and everything inside it is reached through that descriptor
    /// (`/proc/self/fd/N/child`), so no path is resolved twice and a
    /// directory swapped for a symlink meanwhile is never followed.
    fn directory(
        &mut self,
        dir: &Path,
        via: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let mut header = header_for(meta, tar::EntryType::Directory, 0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;

        let unreadable = |source| ArchiveError::Unreadable {
            path: dir.to_path_buf(),
            source,
        };
        let handle = crate::lock::open_dir_nofollow(via).map_err(unreadable)?;
        let opened = handle.metadata().map_err(unreadable)?;
        if opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(ArchiveError::Changed {
                path: dir.to_path_buf(),
                detail: "replaced by another directory".into(),
            });
        }
        let base = fd_path(&handle).unwrap_or_else(|| via.to_path_buf());
        let mut children: Vec<_> = fs::read_dir(&base)
            .map_err(unreadable)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        // Byte order, not locale order: deterministic everywhere.
        children.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_bytes().cmp(b.as_bytes())
        });
        for child in children {
            let path = dir.join(&child);
            let access = base.join(&child);
            let inner = name.join(&child);
            let meta =
                fs::symlink_metadata(&access).map_err(|source| ArchiveError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
            let ft = meta.file_type();
            if ft.is_dir() {
                self.directory(&path, &access, &inner, &meta)?;
            } else if ft.is_file() {
                self.file(&path, &access, &inner, &meta)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&access).map_err(|source| ArchiveError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
                let mut header = header_for(&meta, tar::EntryType::Symlink, 0);
                self.builder
                    .append_link(&mut header, &inner, &target)
                    .map_err(|e| self.write_err(e))?;
                self.entries += 1;
            } else {
                let kind = if ft.is_fifo() {
                    "fifo"
                } else if ft.is_socket() {
                    "socket"
                } else if ft.is_block_device() {
                    "block device"
                } else if ft.is_char_device() {
                    "character device"
                } else {
                    "unknown file type"
                };
                self.skipped.push(Skipped { path: inner, kind });
            }
        }
        drop(handle);
        Ok(())
    }

    fn file(
        &mut self,
        path: &Path,
        via: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let unreadable = |source| ArchiveError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        // O_NOFOLLOW | O_NONBLOCK: if the entry was swapped for a link or a
        // FIFO since we looked, refuse it instead of following or hanging.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(via)
            .map_err(unreadable)?;
        let opened = file.metadata().map_err(unreadable)?;
        if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(ArchiveError::Changed {
                path: path.to_path_buf(),
                detail: "replaced by another file".into(),
            });
        }
        let size = meta.len();
        let mut header = header_for(meta, tar::EntryType::Regular, size);
        let mut reader = ChunkReader::new(
            file,
            size,
            &self.store_hint,
            self.input_bytes,
            &mut *self.on_progress,
        );
        let result = self.builder.append_data(&mut header, name, &mut reader);
        // The reader's own failure explains a write failure better.
        if let Some(err) = reader.take_error() {
            return Err(match err {
                ReadFailure::Io(source) => ArchiveError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                },
                ReadFailure::Shrunk => ArchiveError::Changed {
                    path: path.to_path_buf(),
                    detail: format!("shorter than its size of {size} bytes"),
                },
            });
        }
        result.map_err(|e| self.write_err(e))?;
        self.store_hint.set(false);
        self.entries += 1;
        self.input_bytes += size;
        Ok(())
    }
}

/// `/proc/self/fd/N` for an open directory: a path that reaches exactly
/// that directory, however its ancestors are renamed or replaced. `None`
/// without /proc (then paths are used as they are).
fn fd_path(dir: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    fs::symlink_metadata(&p).is_ok().then_some(p)
}

fn header_for(meta: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h
}
