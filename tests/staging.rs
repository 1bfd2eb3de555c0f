//! A staged archive belongs to one episode directory (issue 10): leftovers
//! of an earlier episode with the same id, a staged archive built from
//! another directory, or a symlink in its place are never uploaded.

mod common;

use common::*;

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A stale archive and a retry state that vouches for it, as a crash
/// between settle and cleanup of an earlier `id` leaves them.
fn plant_stale_archive(site: &Site, id: &str, content: &[u8], source: Option<(u64, u64)>) {
    let outbox = site.state_dir("outbox");
    std::fs::write(outbox.join(format!("{id}.tar.gz")), content).expect("stale archive");
    let mut retry = serde_json::json!({
        "attempts": 1,
        "next_attempt_at": 0,
        "last_error": "HTTP 503",
        "claimed_at": now() - 3600,
        "archive_sha256": sha256_hex(content),
        "archive_bytes": content.len(),
    });
    if let Some((dev, ino)) = source {
        retry["archive_source"] = serde_json::json!({ "dev": dev, "ino": ino });
    }
    std::fs::write(
        outbox.join(format!("{id}.retry.json")),
        serde_json::to_vec(&retry).expect("json"),
    )
    .expect("retry state");
}

fn stored_names(rcv: &Receiver, site: &Site, id: &str) -> Vec<String> {
    rcv.entries(&site.host, id)
        .into_iter()
        .map(|e| e.0)
        .collect()
}

#[test]
fn leftovers_of_an_earlier_episode_with_the_same_id_are_not_uploaded() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    plant_stale_archive(&site, "ep", b"an older recording's archive", None);
    std::fs::write(site.state_dir("outbox").join("ep.tar.gz.partial"), b"half").expect("partial");
    site.add_episode("ep", &[("new.txt", b"the new recording")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stored_names(&rcv, &site, "ep"),
        ["ep", "ep/done.marker", "ep/new.txt"]
    );
    assert!(
        site.names("outbox").is_empty(),
        "{:?}",
        site.names("outbox")
    );
    assert!(stderr(&out).contains("earlier episode"), "{}", stderr(&out));
}

#[test]
fn a_staged_archive_from_another_directory_is_rebuilt() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    // Claimed already (in the outbox), with an archive staged for a
    // directory that is not this one.
    let dir = site.episode("outbox", "ep", 1000, true);
    plant_stale_archive(&site, "ep", b"not built from this directory", Some((1, 2)));
    let out = site.ship(&["ep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stored_names(&rcv, &site, "ep"),
        ["ep", "ep/data.bin", "ep/done.marker"]
    );
    assert!(!dir.exists());
    assert_eq!(site.where_is("ep"), Some("shipped"));
}

#[test]
fn a_symlink_in_place_of_the_staged_archive_is_never_followed() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    site.episode("outbox", "ep", 1000, true);
    let elsewhere = site.dir.path().join("not-ours.tar.gz");
    std::fs::write(&elsewhere, b"someone else's file").expect("target");
    std::os::unix::fs::symlink(&elsewhere, site.state_dir("outbox").join("ep.tar.gz"))
        .expect("symlink");
    let out = site.ship(&["ep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stored_names(&rcv, &site, "ep"),
        ["ep", "ep/data.bin", "ep/done.marker"]
    );
    assert_eq!(
        std::fs::read(&elsewhere).expect("target"),
        b"someone else's file",
        "the symlink's target is untouched"
    );
}

#[test]
fn a_fifo_in_place_of_the_retry_state_does_not_block() {
    let rcv = Receiver::http(&[]);
    let site = Site::new(&rcv.url);
    site.episode("outbox", "ep", 1000, true);
    let fifo = site.state_dir("outbox").join("ep.retry.json");
    let path = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo(3) on a path we own.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let out = site.ship_with_timeout(&["ep"], std::time::Duration::from_secs(30));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(site.where_is("ep"), Some("shipped"));
}
