//! The REST API of process 0 (JSON) and the dashboard page.

use super::{error, AppState, JobStatus, JobView, Json};
use crate::metrics::{parse_text, Sample};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The dashboard: one page, scripts and styles inline, no network access needed.
const DASHBOARD: &str = include_str!("dashboard.html");

/// How long process 0 waits for another process's `/metrics`.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest `/metrics` page process 0 reads from another process.
const SCRAPE_LIMIT: u64 = 32 << 20;

#[allow(clippy::result_large_err)] // an error page, answered once
fn view(s: &AppState) -> Result<&Arc<JobView>, Response> {
    s.view
        .as_ref()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "the REST API is served by process 0"))
}

fn status(v: &JobView) -> JobStatus {
    v.status.lock().map_or(JobStatus::Running, |s| *s)
}

pub(super) async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

pub(super) async fn health(State(s): State<AppState>) -> Response {
    match view(&s) {
        Ok(v) => {
            let st = status(v);
            let code = match st {
                JobStatus::Failed => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            };
            (
                code,
                Json(json!({ "status": if code == StatusCode::OK { "UP" } else { "DOWN" }, "job": s.metrics.job(), "state": st })),
            )
                .into_response()
        }
        Err(e) => e,
    }
}

pub(super) async fn job(State(s): State<AppState>) -> Response {
    let v = match view(&s) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let m = &s.metrics;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (completed, failed) = m.checkpoint_counts();
    let c = &v.physical.cluster;
    Json(json!({
        "name": m.job(),
        "state": status(v),
        "started_at_ms": m.job_started_ms(),
        "uptime_seconds": now.saturating_sub(m.job_started_ms()) as f64 / 1000.0,
        "restarts": m.restarts(),
        "cluster": {
            "nodes": c.nodes,
            "processes_per_node": c.procs_per_node,
            "workers_per_process": c.workers,
            "slots": c.slots(),
        },
        "slots_needed": v.physical.slots_needed,
        "tasks": v.physical.tasks,
        "vertices": v.physical.vertices.len(),
        "default_parallelism": v.physical.default_parallelism,
        "max_parallelism": v.physical.max_parallelism,
        "checkpoints": {
            "interval_ms": v.checkpoint_interval_ms,
            "completed": completed,
            "failed": failed,
        },
        "cancel_available": v.cancel.is_some(),
    }))
    .into_response()
}

pub(super) async fn plan(State(s): State<AppState>) -> Response {
    let v = match view(&s) {
        Ok(v) => v,
        Err(e) => return e,
    };
    Json(json!({
        "job": v.plan.name,
        "plan": v.physical,
        "operators": v.plan.operators,
    }))
    .into_response()
}

/// `?limit=N` of `/api/checkpoints`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Limit {
    limit: Option<usize>,
}

pub(super) async fn checkpoints(
    State(s): State<AppState>,
    q: Result<Query<Limit>, QueryRejection>,
) -> Response {
    let v = match view(&s) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let limit = match q {
        Ok(Query(l)) => l.limit.unwrap_or(usize::MAX),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad query: {e}; expected ?limit=N with N a whole number"),
            )
        }
    };
    let mut history = s.metrics.checkpoint_history();
    history.reverse();
    history.truncate(limit);
    let (completed, failed) = s.metrics.checkpoint_counts();
    Json(json!({
        "interval_ms": v.checkpoint_interval_ms,
        "completed": completed,
        "failed": failed,
        "latest": history.first(),
        "history": history,
    }))
    .into_response()
}

/// Whether `headers` carry the token (`Authorization: Bearer <token>`), compared in
/// constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The job view, if `headers` carry the token mutating requests need; else the refusal.
fn mutating<'a>(s: &'a AppState, headers: &HeaderMap) -> Result<&'a JobView, Response> {
    let v = view(s)?;
    let Some(token) = v.token.as_deref() else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "mutating requests are disabled: start the job with --http-token or WEIR_HTTP_TOKEN",
        ));
    };
    if !authorized(headers, token) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer <token>` with the token the job was started with",
        ));
    }
    Ok(v)
}

/// Query of `POST /api/savepoint`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SavepointQuery {
    /// Where to write the savepoint (a new directory on process 0's machine).
    target: String,
    /// Cancel the job once the savepoint is written (Flink's stop with savepoint).
    #[serde(default)]
    stop: bool,
}

/// `POST /api/savepoint?target=DIR[&stop=true]`: copy the newest checkpoint every worker
/// completed into `DIR` (what `savepoint` does), then, with `stop=true`, cancel the job.
pub(super) async fn savepoint(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SavepointQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let v = match mutating(&s, &headers) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the savepoint's directory: POST /api/savepoint?target=DIR[&stop=true]",
        );
    };
    let Some(from) = v.savepoint_from.clone() else {
        return error(
            StatusCode::CONFLICT,
            "this run takes no checkpoints here (start it with --checkpoint-interval; on a cluster of several nodes run `savepoint --checkpoint ID` on every node)",
        );
    };
    if q.stop && v.cancel.is_none() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "stop with a savepoint stops a job of one process only; take the savepoint, then stop the launchers with SIGTERM",
        );
    }
    let (job, max_parallelism) = (v.plan.name.clone(), v.plan.max_parallelism);
    let target = std::path::PathBuf::from(&q.target);
    let taken = tokio::task::spawn_blocking(move || {
        crate::savepoints::take(&from, &job, max_parallelism, &target, None)
    })
    .await;
    let info = match taken {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            let code = match e.domain {
                crate::error::ErrorDomain::User => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return error(code, e.message);
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the savepoint task failed: {e}"),
            )
        }
    };
    tracing::info!(checkpoint = info.checkpoint, target = %q.target, "savepoint written through the REST API");
    if q.stop {
        if let Some(flag) = &v.cancel {
            flag.store(true, Ordering::SeqCst);
            if let Ok(mut s) = v.status.lock() {
                *s = JobStatus::Cancelling;
            }
        }
    }
    Json(json!({
        "checkpoint": info.checkpoint,
        "path": q.target,
        "workers": info.workers,
        "stopping": q.stop,
    }))
    .into_response()
}

pub(super) async fn cancel(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let v = match mutating(&s, &headers) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(flag) = &v.cancel else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "cancel stops a job of one process only; stop a cluster's launchers with SIGTERM",
        );
    };
    let st = status(v);
    if st != JobStatus::Running {
        return error(
            StatusCode::CONFLICT,
            format!("the job is not running (state {st:?})"),
        );
    }
    flag.store(true, Ordering::SeqCst);
    if let Ok(mut s) = v.status.lock() {
        *s = JobStatus::Cancelling;
    }
    tracing::warn!("cancel requested through the REST API");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "state": JobStatus::Cancelling })),
    )
        .into_response()
}

/// GET `http://addr/metrics` with a plain HTTP/1.0 request; the body on status 200.
async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let get = async {
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        conn.take(SCRAPE_LIMIT)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "not an HTTP response".to_string())?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(head.lines().next().unwrap_or_default().to_string());
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, get)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Per-instance numbers of one vertex.
#[derive(Default, Clone, Copy)]
struct Numbers {
    records_in: f64,
    records_out: f64,
    records_read: f64,
    back_pressured_seconds: f64,
    busy_seconds: f64,
    watermark: Option<f64>,
}

pub(super) async fn vertices(State(s): State<AppState>) -> Response {
    let v = match view(&s) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut samples: Vec<Sample> = parse_text(&s.metrics.encode());
    let scrapes = v
        .peers
        .iter()
        .map(|&(p, addr)| async move { (p, addr, scrape(addr).await) });
    let mut unreachable = Vec::new();
    for (p, addr, r) in futures_join(scrapes.collect()).await {
        match r {
            Ok(text) => samples.extend(parse_text(&text)),
            Err(e) => {
                unreachable.push(json!({ "process": p, "address": addr.to_string(), "error": e }))
            }
        }
    }
    // (vertex name, instance) → numbers.
    let mut by: BTreeMap<(String, usize), Numbers> = BTreeMap::new();
    for smp in &samples {
        let (Some(vx), Some(inst)) = (
            smp.label("vertex"),
            smp.label("instance").and_then(|i| i.parse::<usize>().ok()),
        ) else {
            continue;
        };
        let n = by.entry((vx.to_string(), inst)).or_default();
        match smp.name.as_str() {
            "weir_task_num_records_in_total" => n.records_in += smp.value,
            "weir_task_num_records_out_total" => n.records_out += smp.value,
            "weir_operator_num_records_out_total" => n.records_read += smp.value,
            "weir_task_back_pressured_time_seconds_total" => n.back_pressured_seconds += smp.value,
            "weir_task_busy_time_seconds_total" => n.busy_seconds += smp.value,
            "weir_operator_current_input_watermark" if smp.value > i64::MIN as f64 => {
                n.watermark = Some(smp.value)
            }
            _ => {}
        }
    }
    let out: Vec<Value> = v
        .physical
        .vertices
        .iter()
        .map(|pv| {
            let mut total = Numbers::default();
            let mut wm: Option<f64> = None;
            let mut all_wm = true;
            let instances: Vec<Value> = pv
                .instances
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let n = by.get(&(pv.name.clone(), i)).copied().unwrap_or_default();
                    total.records_in += n.records_in;
                    total.records_out += n.records_out;
                    total.records_read += n.records_read;
                    total.back_pressured_seconds += n.back_pressured_seconds;
                    total.busy_seconds += n.busy_seconds;
                    match n.watermark {
                        Some(w) => wm = Some(wm.map_or(w, |m: f64| m.min(w))),
                        None => all_wm = false,
                    }
                    json!({
                        "instance": i,
                        "node": slot.node,
                        "process": slot.process,
                        "worker": slot.worker,
                        "records_in": n.records_in,
                        "records_out": n.records_out,
                        "records_read": n.records_read,
                        "back_pressured_seconds": n.back_pressured_seconds,
                        "busy_seconds": n.busy_seconds,
                        "watermark": n.watermark,
                    })
                })
                .collect();
            json!({
                "id": pv.id,
                "name": pv.name,
                "operators": pv.operators,
                "parallelism": pv.parallelism,
                "records_in": total.records_in,
                "records_out": total.records_out,
                "records_read": total.records_read,
                "back_pressured_seconds": total.back_pressured_seconds,
                "busy_seconds": total.busy_seconds,
                // The vertex's watermark is the minimum over its instances, once all have one.
                "watermark": if all_wm { wm } else { None },
                "instances": instances,
            })
        })
        .collect();
    Json(json!({
        "job": s.metrics.job(),
        "vertices": out,
        "unreachable_processes": unreachable,
    }))
    .into_response()
}

/// Await futures concurrently on the current-thread runtime (no extra dependency).
async fn futures_join<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(r) = h.await {
            out.push(r);
        }
    }
    out
}
