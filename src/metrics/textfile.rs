//! Replace the textfile atomically: node_exporter reads it at any moment
//! and must see the old file or the new one, never a part.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the file is written: `path` itself, or, when `path` is a symlink,
/// the file it names. That is how the textfile directory of Debian's
/// node_exporter, which belongs to that package, shows a file that cis490
/// writes in its own directory (install.sh links
/// `/var/lib/prometheus/node-exporter/cis490.prom` to
/// `/var/lib/cis490/metrics/cis490.prom`); the link itself stays. Only a
/// link to a `*.prom` file is followed, and only one level.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(path)?;
            let target = match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
            if target.extension().is_none_or(|e| e != "prom") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "it is a symlink to {}, which is not a .prom file",
                        target.display()
                    ),
                ));
            }
            Ok(target)
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// node_exporter runs as another user (`prometheus` on Debian): the file is
/// world-readable whatever the unit's `UMask=`. It holds nothing secret.
pub const MODE: u32 = 0o644;

/// The temp file beside `path`: hidden and not ending in `.prom`, so that
/// the textfile collector never reads it half-written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Temp file in the same directory, written, fsynced, renamed over `path`.
/// One writer at a time (the caller holds the counters lock), so the temp
/// name is fixed and whatever a killed writer left there is replaced.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        // Unlinked first: a leftover may belong to another user (a manual
        // run as root) and could not be opened for writing.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(MODE)
            .open(&tmp)?;
        // The umask may have taken bits off.
        f.set_permissions(fs::Permissions::from_mode(MODE))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
