//! Pack an episode directory into a staged `.tar.gz`.
//!
//! - Entries under a top-level `<id>/`, in sorted order, so the same input
//!   gives the same bytes. Modes, mtimes and numeric owners are kept; nothing
//!   that changes by merely reading (atime) is stored.
//! - Symlinks are stored as symlinks and never followed; FIFOs, sockets and
//!   devices are skipped with a warning and never opened.
//! - Streamed through fixed-size buffers: memory does not grow with size,
//!   nor with the number of files (listings are sorted in bounded passes).
//! - Incompressible data (video, JPEG frames, already-compressed files) is
//!   detected per 64 KiB piece by its byte entropy and written as stored
//!   deflate blocks instead of being run through the compressor. That is
//!   most of the speed available.
//! - Files are batched into 512 KiB blocks: threads meet once per block,
//!   not once per file, so many small files cost no more than one big one.
//! - Runs of zeros (sparse files, disk images) are written as one deflate
//!   block each, at deflate's best ratio, without being compressed.
//! - Written to `<id>.tar.gz.partial`, fsynced, then renamed, with SHA-256
//!   computed on the way out.
//!
//! The pieces: `walk` (the tree into tar entries), `listing` (a
//! directory's names in order, in bounded memory), `entropy` (which runs
//! of a block to store or deflate), `gzip` (the parallel gzip writer),
//! `zeros` (runs of zeros as one deflate block), `hash` (SHA-256 read back
//! behind the writer).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::Compression;

mod entropy;
mod gzip;
mod hash;
mod listing;
mod walk;
mod zeros;

use gzip::GzWriter;
use hash::HashingSink;
pub use hash::SPACE_CHECK_EVERY;
use walk::{Walked, walk_episode};

/// Read, compression and hashing chunk size.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file in the episode cannot be read: an operator must fix permissions.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{path} changed while it was being archived ({detail})")]
    Changed { path: PathBuf, detail: String },
    #[error("cannot write archive {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Something left out of the archive on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path inside the episode.
    pub path: PathBuf,
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct ArchiveSummary {
    pub archive_bytes: u64,
    /// File content bytes read from the episode.
    pub input_bytes: u64,
    pub entries: u64,
    pub sha256: [u8; 32],
    pub skipped: Vec<Skipped>,
}

/// How to build: settings from `[shipper]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    pub gzip_level: u32,
    /// Deflate worker threads; 0 = one per core.
    pub threads: usize,
    /// Stop with `io::ErrorKind::StorageFull` before the filesystem's free
    /// space drops below this many bytes (0: no check). The recorder
    /// writes to the same disk while we stage.
    pub keep_free: u64,
}

/// The compressor setting for `[shipper] gzip_level`. zlib-rs's level 6
/// is a faster, coarser strategy than gzip's (zlib-ng's "medium"): 5%
/// larger than `gzip -6` on sensor CSV. Its level 7 is gzip's own lazy
/// matching and lands at 0.955x `gzip -6` for about pigz's CPU, so the
/// default 6 means what it means to gzip: at least gzip -6's ratio.
fn deflate_level(gzip_level: u32) -> Compression {
    match gzip_level {
        6 => Compression::new(7),
        n => Compression::new(n.min(9)),
    }
}

/// Build `final_path` from `episode_dir`, staging at `partial_path`.
/// `on_progress` gets the number of content bytes read so far.
pub fn build(
    episode_dir: &Path,
    top_name: &str,
    partial_path: &Path,
    final_path: &Path,
    options: BuildOptions,
    on_progress: &mut dyn FnMut(u64),
) -> Result<ArchiveSummary, ArchiveError> {
    let write_err = |source| ArchiveError::Write {
        path: partial_path.to_path_buf(),
        source,
    };
    // Whatever a crashed run left behind goes; the new file is created
    // exclusively and never through a symlink (the name is predictable).
    crate::layout::remove_if_present(partial_path)
        .map_err(|e| write_err(io::Error::other(e.to_string())))?;
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o640)
            .open(partial_path)
            .map_err(write_err)?
    };
    let sink = HashingSink::new(file, options.keep_free).map_err(write_err)?;
    let gz = GzWriter::new(sink, deflate_level(options.gzip_level), options.threads)
        .map_err(write_err)?;
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);

    let Walked {
        input_bytes,
        entries,
        skipped,
    } = walk_episode(
        &mut builder,
        episode_dir,
        Path::new(top_name),
        on_progress,
        partial_path,
    )?;

    let gz = builder.into_inner().map_err(write_err)?;
    let (file, sha256, archive_bytes) = gz
        .finish()
        .and_then(HashingSink::finish)
        .map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(partial_path, final_path).map_err(write_err)?;
    if let Some(dir) = final_path.parent() {
        crate::layout::sync_dir(dir).map_err(|e| write_err(io::Error::other(e.to_string())))?;
    }
    crate::failpoint!(crate::failpoint::STAGE_AFTER_RENAME);
    Ok(ArchiveSummary {
        archive_bytes,
        input_bytes,
        entries,
        sha256,
        skipped,
    })
}

/// SHA-256 and size of an existing archive (a staged one, reused on
/// retry). `on_progress` gets the bytes hashed so far.
pub fn digest_file(path: &Path, on_progress: &mut dyn FnMut(u64)) -> io::Result<([u8; 32], u64)> {
    let mut f = crate::layout::open_nofollow(path)?;
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
        on_progress(total);
    }
    let digest = hash.finish();
    let digest: [u8; 32] = digest
        .as_ref()
        .try_into()
        .map_err(|_| io::Error::other("SHA-256 digest is not 32 bytes"))?;
    Ok((digest, total))
}

#[cfg(test)]
mod tests {
    fn level6() -> super::BuildOptions {
        super::BuildOptions {
            gzip_level: 6,
            ..Default::default()
        }
    }

    use super::*;

    /// Deterministic incompressible bytes (xorshift).
    pub(super) fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn mixed_stream_round_trips_and_stores_random_data() {
        let d = tempfile::tempdir().expect("tempdir");
        let ep = d.path().join("ep1");
        fs::create_dir_all(ep.join("sub")).expect("mkdir");
        let random = random_bytes(3 * CHUNK + 123, 42);
        let text = "sensor,value\n1,2\n".repeat(40_000);
        fs::write(ep.join("video.bin"), &random).expect("write");
        fs::write(ep.join("sub/log.csv"), &text).expect("write");
        fs::write(ep.join("done.marker"), b"").expect("write");
        let (partial, fin) = (d.path().join("a.partial"), d.path().join("a.tar.gz"));
        let s = build(&ep, "ep1", &partial, &fin, level6(), &mut |_| {}).expect("build");
        assert!(!partial.exists());
        let bytes = fs::read(&fin).expect("read");
        assert_eq!(bytes.len() as u64, s.archive_bytes);
        let (digest, len) = digest_file(&fin, &mut |_| {}).expect("digest");
        assert_eq!((digest, len), (s.sha256, s.archive_bytes));
        // Random data stored (barely any overhead), text still compressed.
        assert!(s.archive_bytes < random.len() as u64 + text.len() as u64 / 20);

        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names = Vec::new();
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").display().to_string();
            let mut content = Vec::new();
            e.read_to_end(&mut content).expect("content");
            if name == "ep1/video.bin" {
                assert_eq!(content, random);
            }
            if name == "ep1/sub/log.csv" {
                assert_eq!(content, text.as_bytes());
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "ep1",
                "ep1/done.marker",
                "ep1/sub",
                "ep1/sub/log.csv",
                "ep1/video.bin"
            ]
        );
    }

    #[test]
    fn same_input_same_bytes() {
        let d = tempfile::tempdir().expect("tempdir");
        let ep = d.path().join("ep");
        fs::create_dir(&ep).expect("mkdir");
        fs::write(ep.join("b"), b"bbbb").expect("write");
        fs::write(ep.join("a"), random_bytes(10_000, 1)).expect("write");
        let out = |n: &str| {
            let f = d.path().join(n);
            build(&ep, "ep", &d.path().join("p"), &f, level6(), &mut |_| {}).expect("build");
            fs::read(f).expect("read")
        };
        assert_eq!(out("1.tgz"), out("2.tgz"));
    }
}
