use std::path::Path;
use std::time::Duration;

use super::*;

/// 2026-11-01 12:00 UTC
const NOV_1: u64 = 1_793_534_400;

/// A certificate for `key`, valid from `not_before` to `not_after`
/// (unix seconds), signed by a throwaway CA; PEM of the leaf then the CA.
fn cert_for(key: &rcgen::KeyPair, cn: &str, not_before: u64, not_after: u64) -> String {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    // (rcgen takes `time` dates; this avoids a dependency on that crate.)
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    let leaf = params.signed_by(key, &issuer).expect("leaf");
    leaf.pem() + &ca_pem
}

fn ecdsa() -> rcgen::KeyPair {
    rcgen::KeyPair::generate().expect("key")
}

fn key_of(alg: &'static rcgen::SignatureAlgorithm) -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(alg).expect("key")
}

/// Name, certificate PEM, key PEM, now, the answer.
type Case<'a> = (&'a str, &'a str, String, u64, Result<CertInfo, CertProblem>);

#[test]
fn check_table() {
    let day = DAY;
    let (from, to) = (NOV_1 - 365 * day, NOV_1);
    let key = ecdsa();
    let cert = cert_for(&key, "lab-7", from, to);
    let other = ecdsa();
    let ed = key_of(&rcgen::PKCS_ED25519);
    let ed_cert = cert_for(&ed, "lab-ed", from, to);
    let rsa = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("rsa");
    let rsa_cert = cert_for(&rsa, "lab-rsa", from, to);
    let not_x509 =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let valid = |subject: &str| {
        Ok(CertInfo {
            subject: subject.into(),
            not_before: from,
            not_after: to,
        })
    };
    let mismatch = |subject: &str| {
        Err(CertProblem::KeyMismatch {
            subject: subject.into(),
        })
    };

    let key_pem = key.serialize_pem();
    let cases: Vec<Case> = vec![
        (
            "valid, ECDSA",
            &cert,
            key_pem.clone(),
            NOV_1 - day,
            valid("CN=lab-7"),
        ),
        (
            "valid on its last second",
            &cert,
            key_pem.clone(),
            to,
            valid("CN=lab-7"),
        ),
        (
            "valid on its first second",
            &cert,
            key_pem.clone(),
            from,
            valid("CN=lab-7"),
        ),
        (
            "valid, Ed25519",
            &ed_cert,
            ed.serialize_pem(),
            NOV_1 - day,
            valid("CN=lab-ed"),
        ),
        (
            "valid, RSA",
            &rsa_cert,
            rsa.serialize_pem(),
            NOV_1 - day,
            valid("CN=lab-rsa"),
        ),
        (
            "expired",
            &cert,
            key_pem.clone(),
            to + 1,
            Err(CertProblem::Expired { not_after: to }),
        ),
        (
            "not yet valid",
            &cert,
            key_pem.clone(),
            from - 1,
            Err(CertProblem::NotYetValid {
                not_before: from,
                now: from - 1,
            }),
        ),
        (
            "another key of the same type",
            &cert,
            other.serialize_pem(),
            NOV_1 - day,
            mismatch("CN=lab-7"),
        ),
        (
            "an RSA key for an ECDSA cert",
            &cert,
            rsa.serialize_pem(),
            NOV_1 - day,
            mismatch("CN=lab-7"),
        ),
        // A wrong key is reported before the dates: renewing would not help.
        (
            "mismatched and expired",
            &cert,
            other.serialize_pem(),
            to + 1,
            mismatch("CN=lab-7"),
        ),
        (
            "garbage certificate",
            "hello",
            key_pem.clone(),
            NOV_1,
            Err(CertProblem::CertUnreadable(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            )),
        ),
        (
            "files swapped",
            &key_pem,
            cert.clone(),
            NOV_1,
            Err(CertProblem::CertUnreadable(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            )),
        ),
        (
            "garbage key",
            &cert,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            NOV_1,
            Err(CertProblem::KeyUnreadable(
                "not an RSA, ECDSA or Ed25519 key".into(),
            )),
        ),
        (
            "empty key",
            &cert,
            String::new(),
            NOV_1,
            Err(CertProblem::KeyUnreadable(
                "holds no unencrypted PEM private key (PKCS#8, RSA or EC)".into(),
            )),
        ),
    ];
    for (name, cert_pem, key_pem, now, want) in cases {
        let got = check(cert_pem.as_bytes(), key_pem.as_bytes(), now);
        assert_eq!(got, want, "{name}");
    }

    // A PEM block that is not a certificate inside.
    let got = check(not_x509.as_bytes(), key.serialize_pem().as_bytes(), NOV_1);
    assert!(
        matches!(&got, Err(CertProblem::CertUnreadable(m)) if m.starts_with("not an X.509 certificate")),
        "{got:?}"
    );
}

#[test]
fn messages_name_the_file_and_the_date() {
    let files = IdentityFiles {
        cert: "/etc/cis490/client.pem".into(),
        key: "/etc/cis490/client.key".into(),
        key_is_credential: false,
    };
    let expired = CertProblem::Expired { not_after: NOV_1 };
    assert_eq!(
        files.describe(&expired),
        "receiver.client_cert /etc/cis490/client.pem expired on 2026-11-01 12:00 UTC"
    );
    let fix = files.fix(&expired);
    assert!(fix.starts_with("renew it"), "{fix}");
    assert!(fix.contains("systemctl restart cis490-ship-scanner") && fix.contains("doctor"));

    let early = CertProblem::NotYetValid {
        not_before: NOV_1,
        now: NOV_1 - 3600,
    };
    assert_eq!(
        files.describe(&early),
        "receiver.client_cert /etc/cis490/client.pem is not valid before 2026-11-01 12:00 UTC \
         (this host's clock says 2026-11-01 11:00 UTC)"
    );
    assert!(files.fix(&early).contains("timedatectl"));

    let mismatch = CertProblem::KeyMismatch {
        subject: "CN=lab-7".into(),
    };
    assert!(
        files
            .describe(&mismatch)
            .starts_with("receiver.client_key /etc/cis490/client.key does not match"),
        "{}",
        files.describe(&mismatch)
    );
    assert!(
        files
            .fix(&mismatch)
            .contains("`openssl pkey -in /etc/cis490/client.key -pubout`"),
        "{}",
        files.fix(&mismatch)
    );
    let credential = IdentityFiles {
        key: "/run/credentials/cis490-ship-scanner.service/client-key".into(),
        key_is_credential: true,
        ..files.clone()
    };
    assert!(
        credential
            .describe(&mismatch)
            .starts_with("the client-key credential /run/credentials/"),
        "{}",
        credential.describe(&mismatch)
    );
    assert!(
        credential
            .fix(&mismatch)
            .contains("/etc/cis490/credentials/client-key")
    );
}

#[test]
fn the_credential_is_recognised_by_its_path() {
    let dir = Path::new("/run/credentials/cis490-ship-episode.service");
    let cert = Path::new("/etc/cis490/client.pem");
    let from_credential =
        IdentityFiles::with_credentials_dir(cert, &dir.join("client-key"), Some(dir));
    assert!(from_credential.key_is_credential);
    let from_config =
        IdentityFiles::with_credentials_dir(cert, Path::new("/etc/cis490/client.key"), Some(dir));
    assert!(!from_config.key_is_credential);
    let no_systemd = IdentityFiles::with_credentials_dir(cert, &dir.join("client-key"), None);
    assert!(!no_systemd.key_is_credential);
}
