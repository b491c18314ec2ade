//! The HTTP server of a job process (feature `http`): `/metrics` on every process; the REST
//! API and the web dashboard on process 0.
//!
//! It runs on a current-thread tokio runtime on a thread of its own, so a job at full load
//! on its worker threads does not hold up its answers, and it never touches a worker: it
//! reads the process's metrics registry (atomics) and the plan. Process 0 sums the metrics
//! of the other processes by scraping their `/metrics` when asked: pull needs no state on
//! process 0, survives a restarted process without any re-registration, and is the same
//! request Prometheus makes (pushing would need a client, a schedule and authentication
//! on every process).

mod api;

use crate::metrics::ProcessMetrics;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use weir_compiler::plan::{JobPlan, PhysicalPlan};

/// What process 0 knows about the job beyond its own metrics.
#[derive(Debug)]
pub struct JobView {
    /// The compiled plan.
    pub plan: JobPlan,
    /// The physical plan with placement.
    pub physical: PhysicalPlan,
    /// `/metrics` addresses of the other processes, by global index.
    pub peers: Vec<(usize, SocketAddr)>,
    /// The token mutating requests must carry (`Authorization: Bearer …`).
    pub token: Option<String>,
    /// Set to stop the job (`POST /api/cancel`); `None` when cancelling is not possible
    /// (a job of several processes).
    pub cancel: Option<Arc<AtomicBool>>,
    /// The job's state as reported by `/api/job`.
    pub status: Arc<Mutex<JobStatus>>,
    /// Checkpoint interval, if the run takes checkpoints.
    pub checkpoint_interval_ms: Option<u64>,
    /// The job's checkpoint directory (`--checkpoint-dir`/<job>), where `POST
    /// /api/savepoint` copies from; `None` without checkpoints or on a cluster of several
    /// nodes (each node holds its own stores: use the `savepoint` command on every node).
    pub savepoint_from: Option<std::path::PathBuf>,
}

/// The job's state, Flink's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Running.
    #[default]
    Running,
    /// Asked to cancel, stopping.
    Cancelling,
    /// Stopped by a cancel request.
    Canceled,
    /// All sources ended and the job finished.
    Finished,
    /// Failed.
    Failed,
}

/// State shared by the handlers.
#[derive(Debug, Clone)]
struct AppState {
    metrics: Arc<ProcessMetrics>,
    view: Option<Arc<JobView>>,
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A JSON answer. (axum's own `Json` needs its `json` feature, which turns on serde_json's
/// `raw_value` for the whole build and so changes rustc's messages in the UI tests.)
pub(crate) struct Json(pub(crate) serde_json::Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the answer: {e}"),
            )
                .into_response(),
        }
    }
}

/// A JSON error response: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.into(), "status": status.as_u16() })),
    )
        .into_response()
}

async fn metrics(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint `{}`: see /api/job, /api/plan, /api/vertices, /api/checkpoints, /health, /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{method} {}` is not allowed", uri.path()),
    )
}

fn router(state: AppState) -> Router {
    let mut r = Router::new().route("/metrics", get(metrics));
    if state.view.is_some() {
        r = r
            .route("/", get(api::dashboard))
            .route("/health", get(api::health))
            .route("/api/job", get(api::job))
            .route("/api/plan", get(api::plan))
            .route("/api/vertices", get(api::vertices))
            .route("/api/checkpoints", get(api::checkpoints))
            .route("/api/cancel", post(api::cancel))
            .route("/api/savepoint", post(api::savepoint));
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serve `/metrics` (and, with `view`, the REST API and the dashboard) on `addr`, on a
/// thread of its own. Fails at once if the address cannot be bound.
pub fn start(
    addr: SocketAddr,
    metrics: Arc<ProcessMetrics>,
    view: Option<JobView>,
) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let state = AppState {
        metrics,
        view: view.map(Arc::new),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("weir-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("cannot serve HTTP on {addr}: {e}");
                        return;
                    }
                };
                let served = axum::serve(listener, router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::warn!("the HTTP server on {addr} stopped: {e}");
                }
            })
        })?;
    Ok(Server {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}
