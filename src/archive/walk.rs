//! The tree walk: every entry of the episode into the tar stream, in byte
//! order, each reached through its directory's open descriptor.
//!
//! Each directory is opened once, without following links, and everything
//! inside it is reached relative to that descriptor (`openat`, `statat`,
//! `readlinkat` on the bare name), so no path is resolved twice and an
//! entry swapped for a symlink meanwhile is never followed. Files are
//! opened `O_NOFOLLOW | O_NONBLOCK` and checked with `fstat` on the open
//! descriptor: what is archived is exactly what was opened. Symlinks are
//! stored as symlinks and never followed; FIFOs, sockets and devices are
//! skipped (reported in [`Walked::skipped`]) and never opened.

use std::ffi::{CStr, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::gzip::GzWriter;
use super::listing::SortedListing;
use super::{ArchiveError, Skipped};

/// What the walk put into the archive, and what it left out.
pub(super) struct Walked {
    /// File content bytes read.
    pub(super) input_bytes: u64,
    pub(super) entries: u64,
    pub(super) skipped: Vec<Skipped>,
}

/// Append `episode_dir` and everything under it to `builder`, as `top`.
/// `partial_path` names the archive in write errors.
pub(super) fn walk_episode<W: Write>(
    builder: &mut tar::Builder<GzWriter<W>>,
    episode_dir: &Path,
    top: &Path,
    on_progress: &mut dyn FnMut(u64),
    partial_path: &Path,
) -> Result<Walked, ArchiveError> {
    let mut walk = Walk {
        builder,
        input_bytes: 0,
        entries: 0,
        skipped: Vec::new(),
        on_progress,
        partial_path,
    };
    let unreadable = unreadable(episode_dir);
    let root_meta = fs::symlink_metadata(episode_dir).map_err(unreadable)?;
    let handle = crate::lock::open_dir_nofollow(episode_dir).map_err(unreadable)?;
    let opened = handle.metadata().map_err(unreadable)?;
    if opened.ino() != root_meta.ino() || opened.dev() != root_meta.dev() {
        return Err(ArchiveError::Changed {
            path: episode_dir.to_path_buf(),
            detail: "replaced by another directory".into(),
        });
    }
    walk.directory(OwnedFd::from(handle), episode_dir, top)?;
    Ok(Walked {
        input_bytes: walk.input_bytes,
        entries: walk.entries,
        skipped: walk.skipped,
    })
}

struct Walk<'a, W: Write> {
    builder: &'a mut tar::Builder<GzWriter<W>>,
    input_bytes: u64,
    entries: u64,
    skipped: Vec<Skipped>,
    on_progress: &'a mut dyn FnMut(u64),
    partial_path: &'a Path,
}

/// Flags for every open inside the episode: never through a link, never
/// blocking on a FIFO swapped in, never inherited.
fn open_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

impl<W: Write> Walk<'_, W> {
    fn write_err(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Write {
            path: self.partial_path.to_path_buf(),
            source,
        }
    }

    /// Archive the open directory `fd` (`dir` in errors) as `name`.
    fn directory(&mut self, fd: OwnedFd, dir: &Path, name: &Path) -> Result<(), ArchiveError> {
        let unreadable = unreadable(dir);
        let stat = rustix::fs::fstat(&fd).map_err(|e| unreadable(e.into()))?;
        let mut header = header_for(&stat, tar::EntryType::Directory, 0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;

        // In byte order, not locale order: deterministic everywhere; read
        // in batches, so memory does not grow with the number of entries.
        let mut listing = SortedListing::new(&fd).map_err(unreadable)?;
        while listing.next_batch().map_err(unreadable)? {
            for entry in listing.entries() {
                let (child, listed_type) = entry.map_err(unreadable)?;
                self.child(&fd, dir, name, child, listed_type)?;
            }
        }
        Ok(())
    }

    /// Archive the entry `child` of the open directory `fd` (`dir` in
    /// errors, `name` in the archive).
    fn child(
        &mut self,
        fd: &OwnedFd,
        dir: &Path,
        name: &Path,
        child: &CStr,
        listed_type: FileType,
    ) -> Result<(), ArchiveError> {
        let child_os = OsStr::from_bytes(child.to_bytes());
        let path = dir.join(child_os);
        let inner = name.join(child_os);
        let unreadable_child = unreadable(&path);
        // Most filesystems name the type in the listing; where they
        // do not, look (without following).
        let file_type = if listed_type == FileType::Unknown {
            let st = rustix::fs::statat(fd, child, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| unreadable_child(e.into()))?;
            FileType::from_raw_mode(st.st_mode)
        } else {
            listed_type
        };
        match file_type {
            FileType::Directory => {
                let sub =
                    rustix::fs::openat(fd, child, open_flags() | OFlags::DIRECTORY, Mode::empty())
                        .map_err(|e| unreadable_child(e.into()))?;
                self.directory(sub, &path, &inner)?;
            }
            FileType::RegularFile => self.file(fd, child, &path, &inner)?,
            FileType::Symlink => self.symlink(fd, child, &path, &inner)?,
            other => {
                let kind = match other {
                    FileType::Fifo => "fifo",
                    FileType::Socket => "socket",
                    FileType::BlockDevice => "block device",
                    FileType::CharacterDevice => "character device",
                    _ => "unknown file type",
                };
                self.skipped.push(Skipped { path: inner, kind });
            }
        }
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &OwnedFd,
        child: &CStr,
        path: &Path,
        name: &Path,
    ) -> Result<(), ArchiveError> {
        let unreadable = unreadable(path);
        let stat = rustix::fs::statat(dir, child, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| unreadable(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return Err(ArchiveError::Changed {
                path: path.to_path_buf(),
                detail: "no longer a symlink".into(),
            });
        }
        let target =
            rustix::fs::readlinkat(dir, child, Vec::new()).map_err(|e| unreadable(e.into()))?;
        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
        let mut header = header_for(&stat, tar::EntryType::Symlink, 0);
        self.builder
            .append_link(&mut header, name, &target)
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;
        Ok(())
    }

    fn file(
        &mut self,
        dir: &OwnedFd,
        child: &CStr,
        path: &Path,
        name: &Path,
    ) -> Result<(), ArchiveError> {
        let unreadable = unreadable(path);
        // O_NOFOLLOW | O_NONBLOCK: if the entry was swapped for a link or a
        // FIFO since the listing, refuse it instead of following or hanging.
        let fd = rustix::fs::openat(dir, child, open_flags(), Mode::empty())
            .map_err(|e| unreadable(e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| unreadable(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ArchiveError::Changed {
                path: path.to_path_buf(),
                detail: "replaced by something that is not a regular file".into(),
            });
        }
        let mut file = File::from(fd);
        let size = stat.st_size.max(0) as u64;
        let mut header = header_for(&stat, tar::EntryType::Regular, size);
        // The header only: the content goes straight into the gzip
        // writer's block below, and the padding after it.
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(|e| self.write_err(e))?;
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX);
            let partial_path = self.partial_path;
            let space = (self.builder.get_mut().content_space(want)).map_err(|source| {
                ArchiveError::Write {
                    path: partial_path.to_path_buf(),
                    source,
                }
            })?;
            let n = match file.read(space) {
                Ok(0) => {
                    return Err(ArchiveError::Changed {
                        path: path.to_path_buf(),
                        detail: format!("shorter than its size of {size} bytes"),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(e)),
            };
            self.builder.get_mut().commit_content(n);
            left -= n as u64;
            self.input_bytes += n as u64;
            (self.on_progress)(self.input_bytes);
        }
        let pad = (512 - size % 512) % 512;
        self.builder
            .get_mut()
            .write_all(&[0u8; 512][..pad as usize])
            .map_err(|e| self.write_err(e))?;
        self.entries += 1;
        Ok(())
    }
}

fn header_for(stat: &Stat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(stat.st_mode & 0o7777);
    h.set_mtime(stat.st_mtime.max(0) as u64);
    h.set_uid(u64::from(stat.st_uid));
    h.set_gid(u64::from(stat.st_gid));
    h
}

/// The error for `path` that could not be read, from the error that said so.
fn unreadable(path: &Path) -> impl Fn(io::Error) -> ArchiveError + Copy + '_ {
    move |source| ArchiveError::Unreadable {
        path: path.to_path_buf(),
        source,
    }
}
