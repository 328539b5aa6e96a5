//! Cold start and footprint of the release binaries: each is started against
//! a minimal Lambda runtime API served here, and timed from process start to
//! its first handled invocation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};

use crate::stats::Figure;

#[derive(Debug, Default)]
struct Runtime {
    event: String,
    served: bool,
    done: Option<(Instant, bool)>,
}

type Shared = Arc<Mutex<Runtime>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Runtime> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn next(State(state): State<Shared>) -> (StatusCode, HeaderMap, String) {
    let event = {
        let mut runtime = lock(&state);
        if runtime.served {
            None
        } else {
            runtime.served = true;
            Some(runtime.event.clone())
        }
    };
    let Some(event) = event else {
        // One invocation per process: later polls wait until it is stopped.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return (StatusCode::OK, HeaderMap::new(), String::new());
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 60_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("bench-request"),
    );
    if let Ok(v) = HeaderValue::from_str(&deadline.to_string()) {
        headers.insert("lambda-runtime-deadline-ms", v);
    }
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    (StatusCode::OK, headers, event)
}

async fn respond(State(state): State<Shared>, UrlPath(_id): UrlPath<String>) -> StatusCode {
    lock(&state).done.get_or_insert((Instant::now(), true));
    StatusCode::ACCEPTED
}

async fn failed(State(state): State<Shared>) -> StatusCode {
    lock(&state).done.get_or_insert((Instant::now(), false));
    StatusCode::ACCEPTED
}

/// One cold start: answers the time to the first response, and the process's
/// peak resident set size in KiB at that moment.
pub async fn cold_start(
    binary: &Path,
    env: &[(&str, String)],
    event: &str,
) -> Result<(f64, u64), String> {
    let state: Shared = Arc::new(Mutex::new(Runtime {
        event: event.to_owned(),
        ..Runtime::default()
    }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let limit = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        if let Some(done) = lock(&state).done {
            break Some(done);
        }
        if Instant::now() > limit || matches!(child.try_wait(), Ok(Some(_))) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let rss = child.id().map(peak_rss_kib).unwrap_or_default();
    let _ = child.kill().await;
    server.abort();
    match outcome {
        Some((at, true)) => Ok((at.duration_since(started).as_secs_f64() * 1000.0, rss)),
        Some((_, false)) => Err(format!("{} reported an error", binary.display())),
        None => Err(format!("{} did not answer", binary.display())),
    }
}

/// `VmHWM` of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_default()
}

/// Size of a file in KiB.
pub fn size_kib(path: &Path) -> f64 {
    std::fs::metadata(path)
        .map(|m| m.len() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Cold starts of one function, `runs` times.
pub async fn figures(
    name: &str,
    binary: PathBuf,
    env: &[(&str, String)],
    event: &str,
    runs: usize,
) -> Vec<Figure> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        match cold_start(&binary, env, event).await {
            Ok((ms, kib)) => {
                times.push(ms);
                rss.push(kib as f64);
            }
            Err(err) => eprintln!("cold start of {name}: {err}"),
        }
    }
    vec![
        Figure::new(
            &format!("{name}: process start to first handled invocation"),
            "ms",
            &times,
        ),
        Figure::new(
            &format!("{name}: peak RSS after the first invocation"),
            "KiB",
            &rss,
        ),
        Figure::once(
            &format!("{name}: stripped release binary (x86_64)"),
            "KiB",
            size_kib(&binary),
        ),
    ]
}
