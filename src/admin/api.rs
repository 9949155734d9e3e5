//! The admin API's routes. Reading is open to whoever reaches the listener; changing
//! something (pause, resume, reload) takes `Authorization: Bearer <token>` when `[admin]
//! token` is set. Every request passes `guard` first (host names, cross-site changes).
//!
//! - `GET /`: the status page (`status.html`, served from the binary).
//! - `GET /routes`: every route's state, consumers, counts, delay and last error (JSON).
//! - `GET /history`: each route's and downlink's totals every 10 s for the last ten minutes.
//! - `POST /routes/{name}/pause`, `POST /routes/{name}/resume`: the route's new status.
//! - `POST /reload`: reads the configuration file again and applies what changed.
//! - `GET /metrics`: Prometheus text.
//! - `GET /healthz`: the process answers. `GET /health`: the same, kept for older probes.
//! - `GET /readyz`: 200 when the bridge does its job, else 503 naming each route and reason.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use super::guard::{authorize, guard, SharedAccess};
use super::history::History;
use crate::control::{ControlError, ControlHandle};

const PAGE: &str = include_str!("status.html");

#[derive(Clone)]
struct Api {
    metrics: &'static PrometheusHandle,
    control: ControlHandle,
    access: SharedAccess,
    history: Arc<History>,
}

pub fn router(
    metrics: &'static PrometheusHandle,
    control: ControlHandle,
    access: SharedAccess,
    history: Arc<History>,
) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/metrics",
            get(|State(api): State<Api>| async move { api.metrics.render() }),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/routes", get(routes))
        .route(
            "/history",
            get(|State(api): State<Api>| async move { Json(api.history.view()) }),
        )
        .route("/routes/{name}/pause", post(pause))
        .route("/routes/{name}/resume", post(resume))
        .route("/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(access.clone(), guard))
        .with_state(Api {
            metrics,
            control,
            access,
            history,
        })
}

async fn readyz(State(api): State<Api>) -> Response {
    match api.control.readiness().await {
        Ok(r) if r.ready => (StatusCode::OK, "ready\n").into_response(),
        Ok(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", r.reasons.join("\n")),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

async fn routes(State(api): State<Api>) -> Response {
    match api.control.overview().await {
        Ok(overview) => Json(overview).into_response(),
        Err(e) => failure(e),
    }
}

async fn pause(State(api): State<Api>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    set_paused(api, headers, name, true).await
}

async fn resume(State(api): State<Api>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    set_paused(api, headers, name, false).await
}

async fn set_paused(api: Api, headers: HeaderMap, name: String, paused: bool) -> Response {
    if let Err(refused) = authorize(&api.access, &headers) {
        return *refused;
    }
    match api.control.set_paused(&name, paused).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => failure(e),
    }
}

async fn reload(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&api.access, &headers) {
        return *refused;
    }
    match api.control.reload().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failure(e),
    }
}

fn failure(e: ControlError) -> Response {
    let status = match e {
        ControlError::NoRoute(_) => StatusCode::NOT_FOUND,
        ControlError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::NoSource => StatusCode::CONFLICT,
        ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({ "error": e.to_string() });
    (status, Json(body)).into_response()
}
