//! The admin HTTP port: `/metrics`, `/healthz`, `/readyz`. Other parts (the ledger's admin
//! API, a gateway's `POST /drain`) merge their routes into [`router`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

/// Readiness shared by the servers of one process. `draining` is the hook for graceful drain:
/// once cancelled, `/readyz` fails and new upgrades are refused.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    pub draining: CancellationToken,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }
}

#[derive(Clone)]
pub struct AdminState {
    pub registry: prometheus::Registry,
    pub health: Arc<Health>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state.registry),
    )
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if state.health.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[derive(Clone)]
struct DrainState {
    health: Arc<Health>,
    token: Arc<str>,
}

/// `POST /drain` with `Authorization: Bearer <admin token>` starts a graceful drain (202).
/// Without a configured token the route answers 403 `DRAIN_DISABLED`, so it cannot be left
/// open by accident; a missing or wrong token gets 401.
pub fn drain_routes(health: Arc<Health>, admin_token: &str) -> Router {
    Router::new()
        .route("/drain", post(drain))
        .with_state(DrainState {
            health,
            token: Arc::from(admin_token),
        })
}

/// Equal-time comparison so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": code, "message": message})),
    )
        .into_response()
}

async fn drain(State(state): State<DrainState>, headers: HeaderMap) -> Response {
    if state.token.is_empty() {
        return refusal(
            StatusCode::FORBIDDEN,
            "DRAIN_DISABLED",
            "no admin token configured (--admin-token / ADMIN_TOKEN); drain with SIGTERM",
        );
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.as_bytes(), state.token.as_bytes()) => {
            let already = state.health.is_draining();
            state.health.draining.cancel();
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"draining": true, "alreadyDraining": already})),
            )
                .into_response()
        }
        _ => refusal(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong bearer token",
        ),
    }
}
