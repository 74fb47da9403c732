//! Certificates for the TLS tests: a test CA, and server certificates it signs for
//! `localhost` and `127.0.0.1`, written as PEM files into a temporary directory.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A certificate authority of the test's own. Its files live until it is dropped.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
}

/// A server's certificate (signed by a [`TestCa`]) and key, as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (each has its own key: a certificate of one does not chain to
    /// another).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let dir = tempfile::Builder::new().prefix("sluice-ca-").tempdir().expect("temp dir");
        let ca = TestCa { issuer, dir };
        write(&ca.ca_file(), &ca.pem());
        ca
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The file holding [`TestCa::pem`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for `localhost` and `127.0.0.1`, its files named after `name`.
    pub fn server_cert(&self, name: &str) -> ServerCert {
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server parameters");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed server certificate");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let cert_file = self.dir.path().join(format!("{name}.crt"));
        let key_file = self.dir.path().join(format!("{name}.key"));
        write(&cert_file, &cert_pem);
        write(&key_file, &key_pem);
        ServerCert { cert_pem, key_pem, cert_file, key_file }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
