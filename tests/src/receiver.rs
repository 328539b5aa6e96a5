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
