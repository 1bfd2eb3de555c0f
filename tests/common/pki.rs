//! Throwaway TLS material: a test CA with server and client certificates.

use std::path::PathBuf;

/// PEM files of a test PKI: a CA, a server certificate for 127.0.0.1 and
/// localhost, and a client certificate, all signed by the CA; a client
/// certificate of that CA that expired in 2021; and a client certificate
/// of another CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        };
        let (ca_pem, ca_issuer) = ca("cis490 test CA");
        write("ca.pem", ca_pem);
        let (cert, key) = leaf(&ca_issuer, &["127.0.0.1", "localhost"], false, Lapsed::No);
        write("server.pem", cert);
        write("server.key", key);
        let (cert, key) = leaf(&ca_issuer, &["lab-test"], true, Lapsed::No);
        write("client.pem", cert);
        write("client.key", key);
        let (cert, key) = leaf(&ca_issuer, &["lab-test"], true, Lapsed::Yes);
        write("expired-client.pem", cert);
        write("expired-client.key", key);
        // A client certificate from an unrelated CA: must be refused.
        let (other_pem, other_issuer) = ca("some other CA");
        write("other-ca.pem", other_pem);
        let (cert, key) = leaf(&other_issuer, &["intruder"], true, Lapsed::No);
        write("rogue-client.pem", cert);
        write("rogue-client.key", key);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// Whether a leaf certificate expired long ago (valid 2020 to 2021).
#[derive(PartialEq)]
enum Lapsed {
    No,
    Yes,
}

fn leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    names: &[&str],
    client: bool,
    lapsed: Lapsed,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    if lapsed == Lapsed::Yes {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}
