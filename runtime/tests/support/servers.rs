//! Misbehaving HTTP servers on loopback: real sockets, for the bounds on outbound requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Accepts connections, reads what comes, and never answers. Knows how many connections it
/// holds open: one the client gave up on is closed by the client.
#[derive(Clone)]
pub struct Stalled {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    changed: Arc<Notify>,
}

impl Stalled {
    pub async fn start() -> Stalled {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = Stalled { port, accepted: Arc::default(), open: Arc::default(), changed: Arc::new(Notify::new()) };
        let this = server.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                this.accepted.fetch_add(1, Ordering::SeqCst);
                this.open.fetch_add(1, Ordering::SeqCst);
                this.changed.notify_waiters();
                let this = this.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // Read (and drop) the request until the client hangs up; answer nothing.
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                    this.open.fetch_sub(1, Ordering::SeqCst);
                    this.changed.notify_waiters();
                });
            }
        });
        server
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections the client still holds.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Returns once `condition` holds.
    pub async fn until(&self, condition: impl Fn(&Stalled) -> bool) {
        loop {
            let changed = self.changed.notified();
            if condition(self) {
                return;
            }
            changed.await;
        }
    }
}

/// Answers `200` with a chunked body that never ends. The handle resolves to the bytes
/// written once the client hangs up (a write fails).
pub async fn endless_body() -> (u16, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
        let mut written = 0;
        while socket.write_all(chunk.as_bytes()).await.is_ok() {
            written += 64 * 1024;
        }
        written
    });
    (port, handle)
}
