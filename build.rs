//! Bakes the build date into the binaries as `CIS490_BUILD_EPOCH` (unix
//! seconds): `quarantine-prune` takes a clock reading before it as proof
//! that the clock is wrong (a binary cannot run before it was built).
//!
//! Deterministic, so that a rebuild of the same source gives the same
//! binary: `SOURCE_DATE_EPOCH` when set (the reproducible-builds
//! convention, set by Debian and most packagers), else the commit time of
//! the checked-out git commit, else [`FALLBACK_EPOCH`]. Never the build
//! machine's clock: that is neither reproducible nor necessarily right.
//! Each of these is a time no later than the build itself, which is all a
//! floor needs to be; one before [`FALLBACK_EPOCH`] (Nix sets
//! `SOURCE_DATE_EPOCH` to 1980) is raised to it, since no build of this code
//! is older.

use std::path::Path;
use std::process::Command;

/// 2026-11-30T00:00:00Z, the day this rule was written: no build of this
/// code can be older.
const FALLBACK_EPOCH: u64 = 1_795_996_800;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(epoch) => epoch,
            Err(_) => panic!("SOURCE_DATE_EPOCH={v:?} is not unix seconds"),
        },
        Err(_) => git_commit_time(Path::new(&dir)).unwrap_or(FALLBACK_EPOCH),
    };
    let epoch = epoch.max(FALLBACK_EPOCH);
    println!("cargo:rustc-env=CIS490_BUILD_EPOCH={epoch}");
}

/// The committer time of HEAD, and a rerun of this script whenever HEAD
/// moves (a commit, a checkout).
fn git_commit_time(dir: &Path) -> Option<u64> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    };
    let epoch = git(&["log", "-1", "--format=%ct"])?.parse().ok()?;
    // HEAD itself (a checkout), the branch it points to (a commit) and
    // packed-refs. A missing path would make cargo rerun this every build,
    // so only existing ones are named.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(epoch)
}
