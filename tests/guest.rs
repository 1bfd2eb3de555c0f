//! Be a good guest (issue 11): the disk reserve on a small filesystem of
//! our own, and the upload rate limit measured in the dev receiver's
//! request log. Real binaries, real mounts (root), a real receiver.

mod common;

use std::process::Command;

use common::*;

fn ship(site: &Site) -> std::process::Output {
    Command::new(SHIP_EPISODE)
        .arg("--config")
        .arg(&site.config)
        .env_remove("CIS490_CONFIG")
        .output()
        .expect("ship-episode")
}

#[test]
fn an_episode_that_would_cross_the_reserve_waits_and_one_that_fits_ships() {
    let fs = SmallFs::mount(64);
    let rcv = Receiver::http(&[]);
    let (site, data) = site_on(&fs, &rcv.url, "disk_reserve_percent = 10");
    // 30 MiB of video leaves ~33 MiB free: staging it would leave ~3 MiB,
    // below the 6.4 MiB reserve. 1 MiB fits.
    record(&data, "a-big", 30 << 20);
    record(&data, "b-small", 1 << 20);
    let out = ship(&site);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(rcv.stored(&site.host, "b-small"), "the one that fits ships");
    assert!(!rcv.stored(&site.host, "a-big"));
    assert!(data.join("outbox/a-big").is_dir(), "kept where it is");
    let outbox: Vec<String> = std::fs::read_dir(data.join("outbox"))
        .expect("outbox")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !outbox
            .iter()
            .any(|n| n.ends_with(".partial") || n.ends_with(".tar.gz")),
        "nothing staged: {outbox:?}"
    );
    let retry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("outbox/a-big.retry.json")).expect("retry state"),
    )
    .expect("json");
    assert!(retry["stage_needs_bytes"].as_u64().expect("needs") >= 30 << 20);
    let text = stderr(&out);
    assert!(text.contains("disk_reserve_percent"), "{text}");

    // With the reserve off the same episode stages and ships.
    std::fs::write(
        &site.config,
        std::fs::read_to_string(&site.config)
            .expect("config")
            .replace("disk_reserve_percent = 10", "disk_reserve_percent = 0"),
    )
    .expect("config");
    let out = Command::new(SHIP_EPISODE)
        .arg("--config")
        .arg(&site.config)
        .arg("a-big")
        .output()
        .expect("ship-episode");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(rcv.stored(&site.host, "a-big"));
}

/// Bytes per second of the upload as the receiver saw it.
fn received_rate(rcv: &Receiver, host: &str, id: &str) -> f64 {
    let log = rcv.requests_for(host, id);
    let r = log.last().expect("an upload");
    let took = r.end.expect("answered").duration_since(r.at);
    r.bytes as f64 / took.as_secs_f64()
}

#[test]
fn a_plain_rate_limit_holds_over_the_upload() {
    let rcv = Receiver::http(&[]);
    let site = Site::bare();
    site.write_config(
        &format!("url = \"{}\"", rcv.url),
        "upload_rate_limit = \"256K\"",
        "",
    );
    site.make_state_dirs();
    site.add_episode("paced", &[("video.bin", &noise(1536 << 10, 5))]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rate = received_rate(&rcv, &site.host, "paced");
    let limit = 256.0 * 1024.0;
    // The bucket starts with half a second's worth, so over ~6 s the mean
    // is a little above the rate, never above 1.5x.
    assert!(
        rate <= limit * 1.25,
        "{rate:.0} B/s against a limit of {limit}"
    );
    assert!(
        rate >= limit * 0.7,
        "{rate:.0} B/s: paced far below the limit"
    );
}

#[test]
fn a_timetable_whose_current_slot_is_off_does_not_pace() {
    let rcv = Receiver::http(&[]);
    let site = Site::bare();
    let now = cis490::bandwidth::local_minute_of_day();
    let hhmm = |m: u16| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    // Off since a minute ago, 64K from two hours on: off now.
    let table = format!("{},off {},64K", hhmm(now + 1439), hhmm(now + 120));
    site.write_config(
        &format!("url = \"{}\"", rcv.url),
        &format!("upload_rate_limit = \"{table}\""),
        "",
    );
    site.make_state_dirs();
    site.add_episode("free", &[("video.bin", &noise(1536 << 10, 6))]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rate = received_rate(&rcv, &site.host, "free");
    assert!(
        rate > 64.0 * 1024.0 * 4.0,
        "{rate:.0} B/s: paced although the current slot of {table:?} is off"
    );
}
