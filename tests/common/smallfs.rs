//! A small filesystem of the test's own, for the disk reserve.

use std::path::{Path, PathBuf};

use super::{Site, noise};
use std::process::Command;

/// A tmpfs of `mib` MiB mounted for the test, unmounted on drop. Needs
/// root, as CI has: without it the test fails, it does not skip.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    pub fn mount(mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A site whose data root is on `fs`; `shipper` lines go into `[shipper]`.
pub fn site_on(fs: &SmallFs, url: &str, shipper: &str) -> (Site, PathBuf) {
    let site = Site::bare();
    let data = fs.path().join("data");
    std::fs::write(
        &site.config,
        format!(
            "host_id = \"{}\"\n[metrics]\ntextfile = \"\"\n[paths]\ndata_root = \"{}\"\n[receiver]\nurl = \"{url}\"\n\
             [shipper]\nrequest_timeout_s = 10\n{shipper}\n",
            site.host,
            data.display()
        ),
    )
    .expect("config");
    cis490::layout::Layout::new(&data)
        .ensure_dirs()
        .expect("dirs");
    (site, data)
}

/// Record a ready episode under `data` the way a recorder does.
pub fn record(data: &Path, id: &str, bytes: usize) {
    let staging = data.join("episodes").join(format!(".in-{id}"));
    std::fs::create_dir_all(&staging).expect("mkdir");
    std::fs::write(staging.join("video.bin"), noise(bytes, bytes as u64)).expect("write");
    std::fs::write(staging.join("done.marker"), b"").expect("marker");
    std::fs::rename(&staging, data.join("episodes").join(id)).expect("rename");
}
