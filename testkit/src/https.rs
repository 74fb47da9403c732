//! An HTTPS server on 127.0.0.1 (rustls, HTTP/1.1, one request per connection): it answers
//! every request `200` with a JSON echo of the method and path, or serves the files of a
//! directory, and counts the handshakes that failed (a client that refused its certificate).

use crate::certs::ServerCert;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct HttpsServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    failed_handshakes: Arc<AtomicUsize>,
    /// Where `GET /<name>` reads `<name>` from, when set; else every request gets the echo.
    files: Option<PathBuf>,
}

impl HttpsServer {
    /// Serves with `cert` until the test's runtime ends.
    pub async fn start(cert: &ServerCert) -> HttpsServer {
        HttpsServer::launch(cert, None).await
    }

    /// As [`HttpsServer::start`], answering `GET /<name>` with the file `<name>` of `dir`
    /// (404 when there is none).
    pub async fn serving(cert: &ServerCert, dir: &Path) -> HttpsServer {
        HttpsServer::launch(cert, Some(dir.to_path_buf())).await
    }

    async fn launch(cert: &ServerCert, files: Option<PathBuf>) -> HttpsServer {
        let config = server_config(cert);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = HttpsServer { port, seen: Arc::default(), failed_handshakes: Arc::default(), files };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => shared.answer(tls).await,
                        Err(_) => {
                            shared.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        server
    }

    /// `METHOD /path` of each request answered, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Connections whose TLS handshake failed.
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::SeqCst)
    }

    async fn answer(&self, tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
        let mut reader = BufReader::new(tls);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.is_err() {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut words = request_line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).push(format!("{method} {path}"));
        let (status, answer) = match &self.files {
            // One plain name only: nothing outside the directory is served.
            Some(dir) => match path.strip_prefix('/').filter(|n| !n.is_empty() && !n.contains(['/', '\\'])) {
                Some(name) if name != ".." => match std::fs::read_to_string(dir.join(name)) {
                    Ok(text) => ("200 OK", text),
                    Err(_) => ("404 Not Found", String::new()),
                },
                _ => ("404 Not Found", String::new()),
            },
            None => ("200 OK", format!(r#"{{"tls": true, "method": "{method}", "path": "{path}"}}"#)),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
        let mut tls = reader.into_inner();
        let _ = tls.write_all(response.as_bytes()).await;
        let _ = tls.shutdown().await;
    }
}

/// A rustls server configuration presenting `cert`.
pub fn server_config(cert: &ServerCert) -> ServerConfig {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("server key PEM");
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate and key")
}
