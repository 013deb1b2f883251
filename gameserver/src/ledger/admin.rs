//! Authenticated admin path for balances: the only way money enters or leaves player accounts
//! outside of bets. Merged into the admin HTTP port.
//!
//! * `POST /admin/ledger/credit`  `{"userId","amount","idempotencyKey","memo"?}` treasury → player
//! * `POST /admin/ledger/debit`   same body, player → treasury (never overdraws)
//! * `GET  /admin/ledger/balance/{userId}`
//! * `GET  /admin/ledger/entries?after=<seq>&limit=<n>` → `{"entries", "archivedThrough"}`
//!
//! Every request needs `Authorization: Bearer <admin token>`; with no token configured the
//! routes answer 503 so the path cannot be left open by accident.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::{user_account, TREASURY};
use super::error::LedgerError;
use super::store::Ledger;
use super::types::{EntryKind, Transfer};

#[derive(Clone)]
struct AdminState {
    ledger: Arc<dyn Ledger>,
    token: Arc<str>,
}

/// Routes for the admin port. `admin_token` empty disables them (503).
pub fn routes(ledger: Arc<dyn Ledger>, admin_token: impl Into<String>) -> Router {
    let state = AdminState {
        ledger,
        token: Arc::from(admin_token.into()),
    };
    Router::new()
        .route("/admin/ledger/credit", post(credit))
        .route("/admin/ledger/debit", post(debit))
        .route("/admin/ledger/balance/{user_id}", get(balance))
        .route("/admin/ledger/entries", get(entries))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": code, "message": message.into()})),
    )
        .into_response()
}

/// Equal-time comparison so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Some(response)` when the request must be refused.
fn refuse(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    if state.token.is_empty() {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ADMIN_DISABLED",
            "no admin token configured",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.as_bytes(), state.token.as_bytes()) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong bearer token",
        )),
    }
}

/// A validated credit/debit request.
#[derive(Debug, PartialEq, Eq)]
struct Movement {
    user_id: String,
    amount: i64,
    key: String,
    memo: String,
}

/// Parse the body by hand so each bad field gets its own message (e.g. fractional amounts).
fn parse_movement(body: &Value) -> Result<Movement, (&'static str, String)> {
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or("").trim();
    let user_id = field("userId");
    if user_id.is_empty() {
        return Err(("INVALID_USER", "userId must be a non-empty string".into()));
    }
    let key = field("idempotencyKey");
    if key.is_empty() {
        return Err((
            "INVALID_IDEMPOTENCY_KEY",
            "idempotencyKey must be a non-empty string".into(),
        ));
    }
    let amount = match body.get("amount") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(a) if a > 0 => a,
            Some(a) => {
                return Err(("INVALID_AMOUNT", format!("amount must be > 0, got {a}")));
            }
            None => {
                return Err((
                    "INVALID_AMOUNT",
                    format!("amount must be an integer number of minor units in i64, got {n}"),
                ))
            }
        },
        Some(other) => {
            return Err((
                "INVALID_AMOUNT",
                format!("amount must be a JSON integer, got {other}"),
            ))
        }
        None => return Err(("INVALID_AMOUNT", "amount is required".into())),
    };
    Ok(Movement {
        user_id: user_id.to_owned(),
        amount,
        key: key.to_owned(),
        memo: field("memo").to_owned(),
    })
}

fn ledger_error(e: LedgerError) -> Response {
    let status = match e {
        LedgerError::Unavailable(_) | LedgerError::Corrupt(_) => StatusCode::SERVICE_UNAVAILABLE,
        LedgerError::KeyReused(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, e.code(), e.to_string())
}

async fn movement(
    state: AdminState,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
    kind: EntryKind,
) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PAYLOAD",
            "body must be a JSON object",
        );
    };
    let m = match parse_movement(&body) {
        Ok(m) => m,
        Err((code, msg)) => return error(StatusCode::UNPROCESSABLE_ENTITY, code, msg),
    };
    let player = user_account(&m.user_id);
    let (from, to, prefix) = match kind {
        EntryKind::Withdrawal => (player, TREASURY.to_owned(), "admin-debit"),
        _ => (TREASURY.to_owned(), player, "admin-credit"),
    };
    let t = Transfer {
        key: format!("{prefix}:{}", m.key),
        kind,
        from,
        to,
        amount: m.amount,
        memo: m.memo,
    };
    match state.ledger.transfer(&t).await {
        Ok(posted) => {
            let balance = match kind {
                EntryKind::Withdrawal => posted.entry.from_balance,
                _ => posted.entry.to_balance,
            };
            tracing::info!(user = %m.user_id, amount = m.amount, ?kind, duplicate = posted.duplicate, "admin ledger movement");
            Json(json!({
                "userId": m.user_id,
                "balance": balance,
                "duplicate": posted.duplicate,
                "entry": posted.entry,
            }))
            .into_response()
        }
        Err(e) => ledger_error(e),
    }
}

async fn credit(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    movement(state, headers, body, EntryKind::Deposit).await
}

async fn debit(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    movement(state, headers, body, EntryKind::Withdrawal).await
}

async fn balance(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    match state.ledger.balance(&user_account(&user_id)).await {
        Ok(b) => Json(json!({"userId": user_id, "balance": b})).into_response(),
        Err(e) => ledger_error(e),
    }
}

#[derive(Deserialize)]
struct EntriesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn entries(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = refuse(&state, &headers) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "after and limit must be non-negative integers",
        );
    };
    let listed = async {
        let entries = state.ledger.entries(q.after, q.limit.min(1000)).await?;
        Ok::<_, LedgerError>((entries, state.ledger.archived_through().await?))
    };
    match listed.await {
        // `archivedThrough`: entries up to it are in the archive, not here.
        Ok((list, archived)) => {
            Json(json!({"entries": list, "archivedThrough": archived})).into_response()
        }
        Err(e) => ledger_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movement_parsing_table() {
        let ok = parse_movement(&json!({"userId":"a","amount":5,"idempotencyKey":"k"})).unwrap();
        assert_eq!(ok.amount, 5);
        let cases = [
            (json!({"amount":5,"idempotencyKey":"k"}), "INVALID_USER"),
            (json!({"userId":"a","amount":5}), "INVALID_IDEMPOTENCY_KEY"),
            (json!({"userId":"a","idempotencyKey":"k"}), "INVALID_AMOUNT"),
            (
                json!({"userId":"a","amount":0,"idempotencyKey":"k"}),
                "INVALID_AMOUNT",
            ),
            (
                json!({"userId":"a","amount":-3,"idempotencyKey":"k"}),
                "INVALID_AMOUNT",
            ),
            (
                json!({"userId":"a","amount":1.5,"idempotencyKey":"k"}),
                "INVALID_AMOUNT",
            ),
            (
                json!({"userId":"a","amount":"5","idempotencyKey":"k"}),
                "INVALID_AMOUNT",
            ),
            (
                json!({"userId":"a","amount":18446744073709551615u64,"idempotencyKey":"k"}),
                "INVALID_AMOUNT",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(parse_movement(&body).unwrap_err().0, code, "{body}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
