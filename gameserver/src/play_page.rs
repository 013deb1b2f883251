//! The dice page in the browser: `/` serves it (and upgrades WebSocket requests, as reference
//! clients use the root path), `/ws` upgrades, `/gamefleet-client.js` is the reference client,
//! and `/dev/token` mints a short-lived token for any user name so the page can log in.
//!
//! A token for anyone is no authentication at all, so the page is for trying the product: local
//! mode serves it to clients on the same machine only, and a gateway only with `--demo-page`
//! (a fleet's `spec.demo.enabled`), which it logs as a warning at start.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::{mint_token, now_secs, MAX_TOKEN_AGE_SECS};
use crate::gateway::Gateway;

const PAGE: &str = include_str!("../static/play.html");
/// The reference JavaScript client (reconnect, drain and resume), used by the page.
pub const CLIENT_JS: &str = include_str!("../static/gamefleet-client.js");

/// Who `/dev/token` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokensFor {
    /// Clients on this machine (local mode).
    Loopback,
    /// Every client (a demo fleet: players arrive through a Service from anywhere).
    Anyone,
}

#[derive(Clone)]
struct PageState {
    gateway: Arc<Gateway>,
    secret: Arc<[u8]>,
    tokens_for: TokensFor,
}

/// The player port's routes with the page; `secret` signs the dev tokens.
pub fn router(gateway: Arc<Gateway>, secret: Arc<[u8]>, tokens_for: TokensFor) -> Router {
    Router::new()
        .route("/", any(root))
        .route("/ws", any(ws_only))
        .route("/dev/token", get(dev_token))
        .route(
            "/gamefleet-client.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CLIENT_JS,
                )
            }),
        )
        .with_state(PageState {
            gateway,
            secret,
            tokens_for,
        })
}

async fn root(
    State(state): State<PageState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => state.gateway.accept(upgrade),
        Err(_) => ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response(),
    }
}

async fn ws_only(
    State(state): State<PageState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => state.gateway.accept(upgrade),
        Err(rejection) => rejection.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    user: Option<String>,
}

async fn dev_token(
    State(state): State<PageState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<TokenQuery>,
) -> Response {
    if state.tokens_for == TokensFor::Loopback && !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "dev tokens are only issued to clients on this machine\n",
        )
            .into_response();
    }
    let user = query
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("player-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    match mint_token(&state.secret, &user, now_secs(), MAX_TOKEN_AGE_SECS) {
        Ok(token) => Json(serde_json::json!({ "userId": user, "token": token })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}
