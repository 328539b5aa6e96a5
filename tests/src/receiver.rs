//! A real HTTP receiver on 127.0.0.1 for tests: the local stack's inspector
//! (see `local-stack`), served on a free port. The query string chooses the
//! answer: `?status=503`, `?delay=2.5` (seconds); otherwise 200.

use std::net::SocketAddr;

use local_stack::inspector::{Inspector, Recorded};

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inspector: Inspector,
}

impl Receiver {
    pub async fn start() -> Self {
        let inspector = Inspector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = inspector.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inspector }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received, oldest first.
    pub fn received(&self) -> Vec<Recorded> {
        self.inspector.all()
    }

    /// Requests whose path (without query) is `path`.
    pub fn at(&self, path: &str) -> Vec<Recorded> {
        self.inspector.named(path)
    }
}

/// An HTTPS receiver on 127.0.0.1 whose certificate is self-signed, made
/// when it starts: no client that checks certificates can complete a
/// handshake with it. Counts the connections it accepted.
#[derive(Debug, Clone)]
pub struct SelfSignedReceiver {
    pub addr: SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SelfSignedReceiver {
    pub async fn start() -> Self {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::<std::sync::atomic::AtomicUsize>::default();
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let acceptor = acceptor.clone();
                // The client refuses the certificate; the handshake fails.
                tokio::spawn(async move { acceptor.accept(stream).await.map(drop) });
            }
        });
        Self { addr, accepted }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
