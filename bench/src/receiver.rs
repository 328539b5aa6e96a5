//! A lean HTTP receiver on 127.0.0.1: answers 200 at once, never answers on
//! paths starting with `/slow`, and notes when each request arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;

#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<(String, Bytes, Instant)>>>);

impl Log {
    pub fn take(&self) -> Vec<(String, Bytes, Instant)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Log,
}

impl Receiver {
    /// Serves on its own thread and single-threaded runtime, so the clients
    /// being measured do not share their runtime's workers with it.
    pub async fn start() -> std::io::Result<Self> {
        let log = Log::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(log.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    let _ = axum::serve(listener, app).await;
                }
            });
        });
        Ok(Self { addr, log })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn handle(State(log): State<Log>, request: Request) -> StatusCode {
    let path = request.uri().path().to_owned();
    let status = if path.starts_with("/fail") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let slow = path.starts_with("/slow");
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    log.0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((path, body, Instant::now()));
    if slow {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    status
}
