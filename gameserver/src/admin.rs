//! The admin HTTP port: `/metrics`, `/healthz`, `/readyz`. Other parts (the ledger's admin
//! API, a gateway's `POST /drain`) merge their routes into [`router`].
//!
//! `/healthz` (liveness) only says the process answers: a Redis outage must not get pods
//! restarted. `/readyz` also needs every [`Dependency`] (Redis): it fails until the first
//! successful check, and again once a dependency has been unreachable for longer than
//! [`DEPENDENCY_GRACE`], so the Service stops sending players to a pod that cannot serve them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ms;

/// How long a dependency may be unreachable before `/readyz` fails: a blip (a reconnect, a
/// failover) keeps the pod in its Service, an outage takes it out.
pub const DEPENDENCY_GRACE: Duration = Duration::from_secs(3);
/// Dependency checks: often until the first success (readiness at start), then at this pace.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const CHECK_INTERVAL_UNTIL_UP: Duration = Duration::from_millis(100);
/// A check that takes longer than this counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the last checks of a dependency found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependencyState {
    /// Not reached yet since the process started (last error, if a check failed).
    Connecting(Option<String>),
    Up,
    /// Unreachable since `since_ms` (monotonic, [`mono_ms`]).
    Down {
        since_ms: u64,
        error: String,
    },
}

/// Something the process needs to serve (Redis), kept up to date by [`watch_dependency`].
#[derive(Debug)]
pub struct Dependency {
    name: &'static str,
    state: Mutex<DependencyState>,
}

impl Dependency {
    fn set(&self, ok: Result<(), String>, now_ms: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = next_state(&state, ok, now_ms);
    }

    pub fn state(&self) -> DependencyState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The state after a check: a failure keeps the time the dependency was first lost.
fn next_state(state: &DependencyState, ok: Result<(), String>, now_ms: u64) -> DependencyState {
    match (state, ok) {
        (_, Ok(())) => DependencyState::Up,
        (DependencyState::Connecting(_), Err(e)) => DependencyState::Connecting(Some(e)),
        (DependencyState::Up, Err(error)) => DependencyState::Down {
            since_ms: now_ms,
            error,
        },
        (DependencyState::Down { since_ms, .. }, Err(error)) => DependencyState::Down {
            since_ms: *since_ms,
            error,
        },
    }
}

/// Why the process is not ready, or `None` when it is. Draining wins; a dependency lost for
/// less than `grace` does not count.
pub fn not_ready_reason(
    started: bool,
    draining: bool,
    dependencies: &[(&str, DependencyState)],
    now_ms: u64,
    grace: Duration,
) -> Option<String> {
    if draining {
        return Some("draining".into());
    }
    // A process still starting is often waiting for a dependency: say which.
    let waiting = dependencies.iter().find_map(|(name, state)| match state {
        DependencyState::Connecting(None) if !started => Some(format!("{name}: not connected yet")),
        DependencyState::Connecting(Some(e)) if !started => {
            Some(format!("{name}: not connected yet: {e}"))
        }
        _ => None,
    });
    if !started {
        return Some(waiting.unwrap_or_else(|| "starting or stopping".into()));
    }
    dependencies.iter().find_map(|(name, state)| match state {
        DependencyState::Up => None,
        DependencyState::Connecting(None) => Some(format!("{name}: not connected yet")),
        DependencyState::Connecting(Some(e)) => Some(format!("{name}: not connected yet: {e}")),
        DependencyState::Down { since_ms, error } => {
            let down = now_ms.saturating_sub(*since_ms);
            (down > grace.as_millis() as u64)
                .then(|| format!("{name}: unreachable for {down} ms: {error}"))
        }
    })
}

/// Readiness shared by the servers of one process. `draining` is the hook for graceful drain:
/// once cancelled, `/readyz` fails and new upgrades are refused.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    pub draining: CancellationToken,
    dependencies: Mutex<Vec<Arc<Dependency>>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Adds a dependency readiness waits for (not connected until its first check passes).
    pub fn dependency(&self, name: &'static str) -> Arc<Dependency> {
        let dep = Arc::new(Dependency {
            name,
            state: Mutex::new(DependencyState::Connecting(None)),
        });
        self.dependencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&dep));
        dep
    }

    pub fn not_ready_reason(&self) -> Option<String> {
        let deps: Vec<(&str, DependencyState)> = self
            .dependencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|d| (d.name, d.state()))
            .collect();
        not_ready_reason(
            self.ready.load(Ordering::Acquire),
            self.is_draining(),
            &deps,
            mono_ms(),
            DEPENDENCY_GRACE,
        )
    }
}

/// Checks `dep` with `check` until `stop` (often until it first passes, then every
/// [`CHECK_INTERVAL`]), logging when it is lost and when it is back.
pub fn watch_dependency<F, Fut>(dep: Arc<Dependency>, stop: CancellationToken, check: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        loop {
            let ok = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
            };
            let before = dep.state();
            dep.set(ok, mono_ms());
            let after = dep.state();
            match (&before, &after) {
                (DependencyState::Up, DependencyState::Up) => {}
                (_, DependencyState::Up) => tracing::info!(dependency = dep.name, "connected"),
                (DependencyState::Up, DependencyState::Down { error, .. }) => {
                    tracing::warn!(dependency = dep.name, error, "lost")
                }
                _ => {}
            }
            let pause = if after == DependencyState::Up {
                CHECK_INTERVAL
            } else {
                CHECK_INTERVAL_UNTIL_UP
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
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
    match state.health.not_ready_reason() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    #[test]
    fn readiness_table() {
        use DependencyState::*;
        let down = |since_ms| Down {
            since_ms,
            error: "connection refused".into(),
        };
        let never = Connecting(Some("connection refused".into()));
        // (started, draining, redis, now ms, reason)
        type Case = (
            bool,
            bool,
            Option<DependencyState>,
            u64,
            Option<&'static str>,
        );
        let cases: [Case; 11] = [
            (true, false, None, 0, None),
            (true, false, Some(Up), 0, None),
            (false, false, Some(Up), 0, Some("starting or stopping")),
            (true, true, Some(Up), 0, Some("draining")),
            (false, true, Some(never.clone()), 0, Some("draining")),
            (
                false,
                false,
                Some(never.clone()),
                0,
                Some("redis: not connected yet: connection refused"),
            ),
            (
                true,
                false,
                Some(Connecting(None)),
                0,
                Some("redis: not connected yet"),
            ),
            (
                true,
                false,
                Some(never),
                0,
                Some("redis: not connected yet: connection refused"),
            ),
            (true, false, Some(down(1_000)), 1_000, None),
            (true, false, Some(down(1_000)), 4_000, None),
            (
                true,
                false,
                Some(down(1_000)),
                4_001,
                Some("redis: unreachable for 3001 ms: connection refused"),
            ),
        ];
        for (started, draining, redis, now, want) in cases {
            let deps: Vec<(&str, DependencyState)> =
                redis.clone().map(|s| ("redis", s)).into_iter().collect();
            assert_eq!(
                not_ready_reason(started, draining, &deps, now, GRACE).as_deref(),
                want,
                "{started} {draining} {redis:?} at {now}"
            );
        }
    }

    #[test]
    fn a_loss_keeps_its_start_and_a_success_ends_it() {
        use DependencyState::*;
        let err = || Err("refused".to_string());
        let s = next_state(&Connecting(None), err(), 10);
        assert_eq!(s, Connecting(Some("refused".into())));
        let s = next_state(&s, Ok(()), 20);
        assert_eq!(s, Up);
        let s = next_state(&s, err(), 30);
        assert_eq!(
            s,
            Down {
                since_ms: 30,
                error: "refused".into()
            }
        );
        let s = next_state(&s, Err("timeout".into()), 90);
        assert_eq!(
            s,
            Down {
                since_ms: 30,
                error: "timeout".into()
            }
        );
        assert_eq!(next_state(&s, Ok(()), 100), Up);
    }
}
