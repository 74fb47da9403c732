//! One TLS stack for every client Sluice opens (http tasks and webhooks, PostgreSQL, the
//! Redis broker and rate limiter, SMTP): rustls with the ring provider.
//!
//! Trust: the system's store, which `SSL_CERT_FILE` / `SSL_CERT_DIR` replace as they do
//! for OpenSSL, plus a CA file a connection names in its `extra` (Airflow's key for that
//! connection type). A certificate that does not chain to a trusted root, or that does not
//! name the host, is refused: there is no switch that turns the check off.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The crypto provider of every TLS client. Installed as the process default too, for
/// the clients (Redis, SMTP) that build their own configuration from it.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // Another one may be installed already (a test harness, an embedding program):
            // then that one stays the default, and Sluice's own configurations keep ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Arc::new(rustls::crypto::ring::default_provider())
        })
        .clone()
}

/// The system's trusted roots, read once (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("a system CA certificate could not be read: {e}");
        }
        found.certs
    })
}

/// The PEM certificates in `path`, for a connection's own CA file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("the CA file {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client configuration trusting the system's roots and, when given, the CA file.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("the CA file {} holds an unusable certificate: {e}", path.display()))?;
        }
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// A reqwest client builder on this stack, trusting the system's roots and, when given, the
/// CA file.
pub fn http_client_builder_trusting(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, String> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(client_config(ca_file)?))
}

/// [`http_client_builder_trusting`] the system's roots only (for clients that name no CA
/// file of their own, such as the CLI's and tests').
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Only a missing CA file fails, and none is named here.
    http_client_builder_trusting(None).unwrap_or_else(|_| reqwest::Client::builder())
}

/// A Redis client for `url`. `rediss://` speaks TLS, checked against the system's roots,
/// or only against the CA file in the URL's `ssl_ca_certs` parameter (Celery's name, as an
/// Airflow broker URL carries it). `ssl_cert_reqs` may only say `required`.
pub fn redis_client(url: &str) -> Result<redis::Client, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{}` is not a Redis URL: {e}", redact_url(url)))?;
    let mut ca_file = None;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "ssl_ca_certs" => ca_file = Some(value.into_owned()),
            "ssl_cert_reqs" if matches!(value.as_ref(), "required" | "CERT_REQUIRED") => {}
            "ssl_cert_reqs" => {
                return Err(format!(
                    "`ssl_cert_reqs={value}` in the Redis URL: Sluice always checks the server's certificate; \
                     drop the parameter, or name the CA file with `ssl_ca_certs`"
                ));
            }
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    provider();
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url).map_err(|e| e.to_string());
    };
    if parsed.scheme() != "rediss" {
        return Err("`ssl_ca_certs` in a Redis URL needs the `rediss://` scheme (TLS)".into());
    }
    let mut plain = parsed.clone();
    plain.set_query(None);
    if !kept.is_empty() {
        plain.query_pairs_mut().extend_pairs(kept);
    }
    let pem = std::fs::read(&ca_file).map_err(|e| format!("cannot read the CA file {ca_file}: {e}"))?;
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
    redis::Client::build_with_tls(plain.as_str(), certificates).map_err(|e| e.to_string())
}

/// `url` with its password replaced, for messages.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(unreadable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).expect_err("no such file");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = client_config(Some(&path)).expect_err("no certificate");
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
