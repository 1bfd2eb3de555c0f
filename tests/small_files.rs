//! Many small files (camera frames, per-frame metadata): 10,000 of them
//! ship intact, and the same episode gives the same archive bytes on a
//! second run. The archive is checked with the stock tools a receiver
//! would use (`gzip -t`, `tar -xzf`). No timing is asserted: speed is
//! measured by scripts/bench.sh.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

const FILES: usize = 10_000;

/// 10,000 files of 0 to ~8 KiB in 10 directories: noise (stored), JSON-like
/// text (deflated) and empty files, as a recorder writes them.
fn record_small_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..FILES {
        let name = format!(
            "cam{}/frame_{i:05}.{}",
            i % 10,
            ["jpg", "json", "bin"][i % 3]
        );
        let content = match i % 3 {
            0 => noise(1000 + (i * 131) % 7000, i as u64 + 1),
            1 => format!(
                "{{\"frame\":{i},\"exposure_us\":{},\"gain\":{:.3},\"tags\":[\"arm\",\"demo\"]}}\n",
                (i * 7919) % 20_000,
                (i % 1000) as f64 / 100.0
            )
            .repeat(1 + i % 40)
            .into_bytes(),
            _ => Vec::new(),
        };
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &content).expect("write");
        files.insert(name, content);
    }
    std::fs::write(dir.join("done.marker"), b"").expect("marker");
    files
}

fn tool(cmd: &mut Command) {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ten_thousand_small_files_ship_intact_and_byte_identical() {
    let rcv = Receiver::http(&[]);
    let site = |host: &str| {
        let s = Site::new(&rcv.url).with_host(host);
        s.write_config(
            &format!("url = \"{}\"", rcv.url),
            "request_timeout_s = 30",
            "",
        );
        s
    };
    let (first, second) = (site("lab-a"), site("lab-b"));
    let id = "frames-1";
    let recording = first.dir.path().join("recording");
    let files = record_small_files(&recording);
    std::fs::rename(&recording, first.state_dir("episodes").join(id)).expect("into episodes");

    let out = first.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(first.where_is(id), Some("shipped"));
    // The same episode again, from another data root: same bytes.
    std::fs::rename(
        first.state_dir("shipped").join(id),
        second.state_dir("episodes").join(id),
    )
    .expect("move the shipped episode");
    let out = second.ship(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let a = std::fs::read(rcv.stored_path("lab-a", id)).expect("first archive");
    let b = std::fs::read(rcv.stored_path("lab-b", id)).expect("second archive");
    assert!(
        a == b,
        "two runs gave different archives ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    let digest = |site: &Site| site.sidecar("shipped", id)["sha256"].clone();
    assert_eq!(digest(&first), digest(&second));
    assert!(
        digest(&first).is_string(),
        "{}",
        first.sidecar("shipped", id)
    );

    // Stock gzip and tar accept it, and every file comes back as it was.
    let archive = rcv.stored_path("lab-a", id);
    tool(Command::new("gzip").arg("-t").arg(&archive));
    let out_dir = first.dir.path().join("extracted");
    std::fs::create_dir(&out_dir).expect("mkdir");
    tool(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&out_dir),
    );
    let root = out_dir.join(id);
    let mut seen = 0;
    for (name, content) in &files {
        let got = std::fs::read(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *content, "{name} differs from its source");
        seen += 1;
    }
    assert_eq!(seen, FILES);
    // Nothing else in it: the files, their 10 directories and done.marker.
    let entries = rcv.entries("lab-a", id);
    assert_eq!(entries.len(), 1 + 10 + FILES + 1);
}
