//! `[shipper] disk_reserve_percent`: staging an archive never takes the
//! data filesystem's free space below this share. The recorder writes to
//! the same disk; a full disk costs it a recording, and us nothing but
//! waiting. The check is pure ([`check`]); [`space_of`] and
//! [`estimate_archive_bytes`] read the disk.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::cli::human_bytes;

/// A filesystem's size and the space an unprivileged writer may still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub available: u64,
}

/// Staging `need` more bytes would cross the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub need: u64,
    pub available: u64,
    pub reserve: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "staging needs about {} but only {} is free, and {} is kept free for the \
             recorder (shipper.disk_reserve_percent)",
            human_bytes(self.need),
            human_bytes(self.available),
            human_bytes(self.reserve)
        )
    }
}

/// Bytes to keep free on a filesystem of `total` bytes.
pub fn reserve_bytes(total: u64, percent: f64) -> u64 {
    (total as f64 * percent.clamp(0.0, 100.0) / 100.0).ceil() as u64
}

/// Whether `need` more bytes fit above the reserve.
pub fn check(space: Space, percent: f64, need: u64) -> Result<(), Shortfall> {
    if percent <= 0.0 {
        return Ok(());
    }
    let reserve = reserve_bytes(space.total, percent);
    if space.available.saturating_sub(need) >= reserve && space.available >= need {
        Ok(())
    } else {
        Err(Shortfall {
            need,
            available: space.available,
            reserve,
        })
    }
}

// The statvfs field widths differ between targets.
#[allow(clippy::unnecessary_cast)]
fn from_statvfs(s: &libc::statvfs) -> Space {
    let frsize = s.f_frsize as u64;
    Space {
        total: s.f_blocks as u64 * frsize,
        available: s.f_bavail as u64 * frsize,
    }
}

/// The filesystem holding `path`.
pub fn space_of(path: &Path) -> io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: a zeroed statvfs is a valid value; c is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(from_statvfs(&s))
}

/// The filesystem holding an open file (no path to resolve again).
pub fn space_of_file(file: &fs::File) -> io::Result<Space> {
    use std::os::fd::AsRawFd;
    // SAFETY: as above, on a descriptor we own.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(from_statvfs(&s))
}

/// An upper bound for an episode's staged archive: the data its files
/// really hold (a sparse file counts by its allocated blocks), plus tar
/// headers and a little deflate overhead. Symlinks are never followed.
pub fn estimate_archive_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?; // lstat: never follows
            total += 1024; // tar header and padding
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len().min(meta.blocks() * 512);
            }
        }
    }
    // Stored deflate blocks add 5 bytes per 64 KiB; round up generously.
    Ok(total + total / 256 + 64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_reserve_as_a_table() {
        let space = |available| Space {
            total: 10 * GIB,
            available,
        };
        // (available, percent, need, fits)
        let rows = [
            (5 * GIB, 10.0, 3 * GIB, true),
            (5 * GIB, 10.0, 4 * GIB, true),
            (5 * GIB, 10.0, 4 * GIB + 1, false),
            (GIB, 10.0, 1, false),
            (GIB, 10.0, 0, true),
            (GIB / 2, 10.0, 0, false),
            (GIB / 2, 0.0, GIB / 2, true),
            (GIB / 2, 0.0, GIB, true),
            (5 * GIB, 50.0, 1, false),
            (10 * GIB, 95.0, GIB / 2, true),
        ];
        for (available, percent, need, fits) in rows {
            let got = check(space(available), percent, need);
            assert_eq!(got.is_ok(), fits, "{available} {percent} {need}: {got:?}");
            if let Err(short) = got {
                assert_eq!(short.reserve, reserve_bytes(10 * GIB, percent));
                assert!(short.to_string().contains("disk_reserve_percent"));
            }
        }
    }

    #[test]
    fn estimate_counts_allocated_data_and_never_follows_links() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("a.bin"), vec![7u8; 100_000]).expect("write");
        std::fs::create_dir(d.path().join("sub")).expect("mkdir");
        let sparse = std::fs::File::create(d.path().join("sub/sparse")).expect("create");
        sparse.set_len(8 << 30).expect("sparse");
        std::os::unix::fs::symlink("/usr", d.path().join("link")).expect("symlink");
        let est = estimate_archive_bytes(d.path()).expect("estimate");
        assert!(est >= 100_000, "{est}");
        assert!(est < 1 << 20, "sparse or linked data counted: {est}");
    }
}
