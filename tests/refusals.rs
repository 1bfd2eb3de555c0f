//! Nothing lost, nothing settled wrongly: a refusal counts only when the
//! receiver made it, and a 2xx only when the receiver can have read the
//! whole body. Against a stock nginx in front of the dev receiver (as on a
//! real collector), and the dev receiver alone.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

const IDS: [&str; 3] = ["r1", "r2", "r3"];

/// A site shipping to `url`, trusting the test CA, presenting the PKI's
/// client certificate `cert`.
fn site_with_cert(url: &str, pki: &Pki, cert: &str) -> Site {
    Site::with_receiver_toml(
        &format!(
            "url = \"{url}\"\nca_bundle = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            pki.path("ca.pem").display(),
            pki.path(&format!("{cert}.pem")).display(),
            pki.path(&format!("{cert}.key")).display()
        ),
        "",
    )
}

fn add_ready(site: &Site) {
    for id in IDS {
        site.add_episode(id, &[("data.txt", id.as_bytes())]);
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(out)
}

/// Nothing settled: none quarantined, none shipped, and the receiver
/// behind nginx never saw a request.
fn assert_nothing_settled(site: &Site, rcv: &Receiver, out: &Output) {
    assert!(
        site.names("quarantine").is_empty(),
        "nothing may be quarantined: {:?}\n{}",
        site.names("quarantine"),
        text(out)
    );
    assert!(site.names("shipped").is_empty(), "{}", text(out));
    assert!(rcv.saw_nothing(), "{}", rcv.stats());
}

/// The refusal of this host by nginx, confirmed by a HEAD it refused the
/// same way: exit 78, every episode kept in the outbox, one upload tried.
fn assert_host_refused(site: &Site, rcv: &Receiver, nginx: &Nginx, out: &Output, page: &str) {
    assert_eq!(code(out), 78, "{}", text(out));
    assert_nothing_settled(site, rcv, out);
    for id in IDS {
        assert_eq!(site.where_is(id), Some("outbox"), "{id}\n{}", text(out));
    }
    // One upload, then the confirming HEAD, both refused by nginx; the
    // host-wide pause stopped the run there.
    let puts = nginx.requests_with("PUT");
    assert_eq!(puts.len(), 1, "{:?}", nginx.requests());
    assert_eq!(puts[0].status, 400, "{puts:?}");
    let heads = nginx.requests_with("HEAD");
    assert_eq!(heads.len(), 1, "{:?}", nginx.requests());
    assert_eq!(heads[0].status, 400, "{heads:?}");
    assert_eq!(heads[0].uri, puts[0].uri);
    let all = text(out);
    assert!(all.contains(page), "nginx's page is the reason: {all}");
    assert!(all.contains("confirmed"), "{all}");
    let pause = cis490::ship::pause_file(&site.data());
    let pause: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pause).expect("pause file")).expect("pause json");
    assert_eq!(pause["refused"], true, "{pause}");
    assert_eq!(pause["status"], 400, "{pause}");
}

#[test]
fn a_client_certificate_nginx_does_not_trust_pauses_the_host_and_quarantines_nothing() {
    let pki = Pki::new();
    let rcv = Receiver::http(&[]);
    let nginx = Nginx::in_front_of(&rcv.url, &pki);
    let site = site_with_cert(&nginx.url, &pki, "rogue-client");
    add_ready(&site);
    let out = site.ship(&[]);
    assert_host_refused(&site, &rcv, &nginx, &out, "The SSL certificate error");
    assert!(
        nginx
            .error_log()
            .contains("client SSL certificate verify error"),
        "{}",
        nginx.error_log()
    );
    let all = text(&out);
    assert!(
        all.contains("client_cert"),
        "the fix names the setting: {all}"
    );
    let last = site.retry_state("r1")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("HEAD /episodes/lab-test/r1"), "{last}");
}

#[test]
fn an_expired_client_certificate_pauses_the_host_and_quarantines_nothing() {
    let pki = Pki::new();
    let rcv = Receiver::http(&[]);
    let nginx = Nginx::in_front_of(&rcv.url, &pki);
    let site = site_with_cert(&nginx.url, &pki, "expired-client");
    add_ready(&site);
    let out = site.ship(&[]);
    // Refused by nginx (confirmed), or before any upload by a local check
    // of the certificate: either way a refusal of this host, nothing lost.
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert_nothing_settled(&site, &rcv, &out);
    for id in IDS {
        assert!(
            matches!(site.where_is(id), Some("episodes" | "outbox")),
            "{id}: {:?}",
            site.where_is(id)
        );
    }
    let puts = nginx.requests_with("PUT");
    assert!(puts.len() <= 1, "{:?}", nginx.requests());
    assert!(puts.iter().all(|r| r.status == 400), "{puts:?}");
    let all = text(&out).to_lowercase();
    assert!(
        all.contains("expire") || all.contains("the ssl certificate error"),
        "{all}"
    );
}

#[test]
fn plain_http_to_the_tls_port_pauses_the_host_and_quarantines_nothing() {
    let pki = Pki::new();
    let rcv = Receiver::http(&[]);
    let nginx = Nginx::in_front_of(&rcv.url, &pki);
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let site = site_with_cert(&url, &pki, "client");
    add_ready(&site);
    let out = site.ship(&[]);
    assert_host_refused(
        &site,
        &rcv,
        &nginx,
        &out,
        "The plain HTTP request was sent to HTTPS port",
    );
    assert!(text(&out).contains("https://"), "the fix names the scheme");
}

#[test]
fn a_genuine_412_behind_nginx_is_quarantined_with_the_check_that_confirmed_it() {
    let pki = Pki::new();
    let rcv = Receiver::http(&["--behave", "late=status:412"]);
    let nginx = Nginx::in_front_of(&rcv.url, &pki);
    let site = site_with_cert(&nginx.url, &pki, "client");
    site.add_episode("late", &[("x", b"x")]);
    site.add_episode("fine", &[("y", b"y")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert_eq!(site.where_is("late"), Some("quarantine"));
    // The receiver answers for this host: the rest of the run went on.
    assert_eq!(site.where_is("fine"), Some("shipped"));
    assert!(rcv.stored(&site.host, "fine"));
    let sidecar = site.sidecar("quarantine", "late");
    assert_eq!(sidecar["http_status"], 412, "{sidecar}");
    assert!(
        sidecar["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("HTTP 412")),
        "{sidecar}"
    );
    assert_eq!(
        sidecar["refusal_check"], "HEAD /episodes/lab-test/late answered 404",
        "{sidecar}"
    );
    assert_eq!(rcv.heads(&site.host, "late"), 1);
    assert_eq!(rcv.heads(&site.host, "fine"), 0, "a 201 needs no check");
    let heads = nginx.requests_with("HEAD");
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0].status, 404, "{heads:?}");
    assert!(!cis490::ship::pause_file(&site.data()).exists());
}

#[test]
fn a_genuine_400_from_the_receiver_is_still_quarantined() {
    let rcv = Receiver::http(&["--behave", "bad=status:400"]);
    let site = Site::new(&rcv.url);
    site.add_episode("bad", &[("x", b"x")]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 65, "{}", text(&out));
    assert_eq!(site.where_is("bad"), Some("quarantine"));
    let sidecar = site.sidecar("quarantine", "bad");
    assert_eq!(sidecar["http_status"], 400, "{sidecar}");
    assert_eq!(
        sidecar["refusal_check"], "HEAD /episodes/lab-test/bad answered 404",
        "{sidecar}"
    );
    assert_eq!(rcv.puts(&site.host, "bad"), 1);
    assert_eq!(rcv.heads(&site.host, "bad"), 1);
}

#[test]
fn a_refusal_of_every_method_is_the_hosts_problem_even_without_nginx() {
    // The dev receiver playing the proxy: `refuse:` answers HEAD too.
    let rcv = Receiver::http(&["--behave", "*=refuse:400"]);
    let site = Site::new(&rcv.url);
    add_ready(&site);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 78, "{}", text(&out));
    assert!(site.names("quarantine").is_empty(), "{}", text(&out));
    for id in IDS {
        assert_eq!(site.where_is(id), Some("outbox"), "{id}");
    }
    let tried: u64 = IDS.iter().map(|id| rcv.puts(&site.host, id)).sum();
    assert_eq!(tried, 1);
    assert_eq!(rcv.heads(&site.host, "r1"), 1);
}

#[test]
fn a_201_before_the_body_was_read_is_not_shipped_and_a_later_attempt_ships_it_once() {
    // A small fixed receive buffer, so that most of the 16 MiB is still to
    // be sent when the early answer comes.
    let rcv = Receiver::http(&[
        "--recv-buffer",
        "65536",
        "--behave",
        "early=once:close-early:201",
    ]);
    let site = Site::new(&rcv.url);
    site.add_episode("early", &[("video.bin", &noise(16 << 20, 11))]);
    let out = site.ship(&[]);
    assert_eq!(code(&out), 75, "{}", text(&out));
    assert_eq!(site.where_is("early"), Some("outbox"));
    assert!(!rcv.stored(&site.host, "early"));
    let retry = site.retry_state("early");
    assert_eq!(retry["last_status"], 201, "{retry}");
    assert!(
        retry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("before the whole body was sent")),
        "{retry}"
    );
    // A receiver that misbehaves pauses the host as unavailable.
    let pause_path = cis490::ship::pause_file(&site.data());
    let pause: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pause_path).expect("pause file")).expect("json");
    assert_eq!(pause["refused"], false, "{pause}");
    let until = pause["until"].as_u64().expect("until");
    assert!(
        wait_until(Duration::from_secs(30), || now() >= until),
        "pause until {until} did not end"
    );

    let out = site.ship(&["early"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(site.where_is("early"), Some("shipped"));
    let sidecar = site.sidecar("shipped", "early");
    let stored = std::fs::read(rcv.stored_path(&site.host, "early")).expect("stored archive");
    assert_eq!(
        sidecar["sha256"].as_str(),
        Some(cis490::ship::hex(&sha256(&stored)).as_str()),
        "the receiver holds exactly what was sent"
    );
    assert_eq!(rcv.puts(&site.host, "early"), 2);
    // Shipped once: a further run has nothing to do.
    let out = site.ship(&[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rcv.puts(&site.host, "early"), 2);
    let names: Vec<String> = rcv
        .entries(&site.host, "early")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["early", "early/done.marker", "early/video.bin"]);
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}
