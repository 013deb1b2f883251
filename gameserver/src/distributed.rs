//! `gameserver gateway` and `gameserver engine`: the two halves as separate processes joined
//! by Redis (bus and ledger). Run any number of each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Health};
use crate::auth::Authenticator;
use crate::bus::history::HistoryLimits;
use crate::bus::redis::{RedisBus, RedisBusConfig};
use crate::cli::args::{DrainArgs, Secret, ServerArgs, ENGINE_DRAIN_TIMEOUT};
use crate::engine::{self, EngineConfig};
use crate::gateway::Gateway;
use crate::ledger::{admin as ledger_admin, durability, Ledger, RedisLedger};
use crate::play_page::{self, TokensFor};
use crate::server;

#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// Namespace of every Redis key and channel (fleets sharing a Redis use different ones).
    #[arg(long, env = "REDIS_PREFIX", default_value = "gf")]
    pub redis_prefix: String,
    /// How long a connection counts as a room member without a refresh from its gateway,
    /// seconds: a dead gateway's players leave the room counts after this. Gateways refresh
    /// their members every third of it.
    #[arg(long, env = "PRESENCE_TTL_SECONDS", default_value_t = 30.0)]
    pub presence_ttl_seconds: f64,
    /// Rooms with members at once across the fleet (0 = unlimited); a join that would open
    /// one more gets ROOM_LIMIT.
    #[arg(long, env = "MAX_LIVE_ROOMS", default_value_t = crate::bus::redis::DEFAULT_MAX_LIVE_ROOMS)]
    pub max_live_rooms: u64,
    /// Bets one player may place per second across all gateways (0 = unlimited); more get
    /// bet_rejected RATE_LIMITED.
    #[arg(long, env = "BETS_PER_SECOND_PER_USER", default_value_t = crate::bus::redis::DEFAULT_BETS_PER_USER_PER_SECOND)]
    pub bets_per_second_per_user: u32,
    /// Bets waiting for an engine per room (0 = unlimited); beyond it bets are refused with
    /// ENGINE_UNAVAILABLE, never dropped after acknowledgement.
    #[arg(long, env = "MAX_BET_BACKLOG", default_value_t = crate::bus::redis::DEFAULT_MAX_BET_BACKLOG)]
    pub max_bet_backlog: u64,
    #[command(flatten)]
    pub history: HistoryArgs,
}

impl RedisArgs {
    /// The bus settings for this process (`node_id`: its gateway or engine name).
    pub fn bus_config(&self, url: String, node_id: String) -> Result<RedisBusConfig, String> {
        let presence_ttl = self.presence_ttl()?;
        let mut cfg = RedisBusConfig::new(url, node_id);
        cfg.prefix = self.redis_prefix.clone();
        cfg.presence_ttl = presence_ttl;
        cfg.max_live_rooms = self.max_live_rooms;
        cfg.bets_per_user_per_second = self.bets_per_second_per_user;
        cfg.max_bet_backlog = self.max_bet_backlog;
        cfg.history = self.history.limits()?;
        Ok(cfg)
    }

    fn presence_ttl(&self) -> Result<Duration, String> {
        let s = self.presence_ttl_seconds;
        if !s.is_finite() || !(1.0..=3_600.0).contains(&s) {
            return Err(format!(
                "--presence-ttl-seconds must be between 1 and 3600, got {s}"
            ));
        }
        Ok(Duration::from_secs_f64(s))
    }
}

/// Bounds of the room and user histories kept for session resume. Gateways and engines of one
/// fleet must use the same values: engines write most entries, gateways replay them.
#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Frames kept per room for resume (approximately, in Redis).
    #[arg(long, env = "HISTORY_ROOM_ENTRIES", default_value_t = 500)]
    pub history_room_entries: usize,
    /// Frames kept per player (bet outcomes and other direct frames).
    #[arg(long, env = "HISTORY_USER_ENTRIES", default_value_t = 50)]
    pub history_user_entries: usize,
    /// Frames older than this are not replayed, and idle histories expire after it, seconds.
    #[arg(long, env = "HISTORY_MAX_AGE_SECONDS", default_value_t = 90)]
    pub history_max_age_seconds: u64,
}

impl HistoryArgs {
    pub fn limits(&self) -> Result<HistoryLimits, String> {
        for (flag, v) in [
            ("--history-room-entries", self.history_room_entries),
            ("--history-user-entries", self.history_user_entries),
        ] {
            if !(1..=100_000).contains(&v) {
                return Err(format!("{flag} must be between 1 and 100000, got {v}"));
            }
        }
        if !(1..=86_400).contains(&self.history_max_age_seconds) {
            return Err(format!(
                "--history-max-age-seconds must be between 1 and 86400, got {}",
                self.history_max_age_seconds
            ));
        }
        Ok(HistoryLimits {
            room_entries: self.history_room_entries,
            user_entries: self.history_user_entries,
            max_age: Duration::from_secs(self.history_max_age_seconds),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct GatewayCmdArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Bearer token for `POST /drain` on the admin port; unset disables the route (403).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "")]
    pub admin_token: Secret,
    /// Serve the dice page at `/` and mint a token for any user at `/dev/token`, so a browser
    /// can play: for demos and sandboxes only, since anyone can then log in as anyone.
    #[arg(long, env = "DEMO_PAGE")]
    pub demo_page: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EngineCmdArgs {
    /// Admin HTTP address (/metrics, /healthz, /readyz, admin ledger API).
    #[arg(long, env = "ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Redis URL for the bus and the ledger: `redis://…`, or a Redis Cluster's nodes,
    /// `redis+cluster://h1:p1,h2:p2` (docs/architecture.md, "Bus on a Redis Cluster").
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Secret,
    /// A separate Redis for the ledger (balances, bet records, rounds, audit stream); default:
    /// the bus's. The ledger's scripts then never delay bet intake (`XADD`) on the bus. Every
    /// engine of a fleet must use the same one. `redis+cluster://h1:p1,h2:p2` puts the ledger
    /// on a Redis Cluster, spread over hash-tagged shards (docs/architecture.md, "Ledger on a
    /// Redis Cluster").
    #[arg(long, env = "LEDGER_REDIS_URL", hide_env_values = true)]
    pub ledger_redis_url: Option<Secret>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Engine name on the bus (default: random).
    #[arg(long, env = "ENGINE_ID")]
    pub engine_id: Option<String>,
    /// How long each round takes bets, milliseconds.
    #[arg(long, env = "BETTING_WINDOW_MS", default_value_t = 4_000)]
    pub betting_window_ms: u64,
    /// Pause between a round's result and the next round, milliseconds.
    #[arg(long, env = "RESULT_PAUSE_MS", default_value_t = 1_000)]
    pub result_pause_ms: u64,
    /// Room lease lifetime, milliseconds: how soon a dead engine's rooms move.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 3_000)]
    pub lease_ttl_ms: u64,
    // On SIGTERM, the engine waits at most the drain timeout for the rounds in progress to
    // settle before it gives its rooms up anyway.
    #[command(flatten)]
    pub drain: DrainArgs,
    /// How long idempotency keys and settled bet records are kept, seconds: a key repeated
    /// within it gets its first outcome. The ledger's audit stream keeps every entry regardless.
    #[arg(long, env = "IDEMPOTENCY_RETENTION_SECS", default_value_t = 86_400)]
    pub idempotency_retention_secs: u64,
    /// Bearer token for the admin ledger API (credit/debit); unset leaves it disabled (503).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "")]
    pub admin_token: Secret,
    /// Run the ledger on a Redis without AOF persistence (development and tests only): a
    /// restart of that Redis loses every balance and pending bet. Without it the engine
    /// refuses to start on such a Redis.
    #[arg(long, env = "ALLOW_EPHEMERAL_LEDGER")]
    pub allow_ephemeral_ledger: bool,
    /// Minor units credited (once, idempotently) to every player at their first bet, from the
    /// house treasury: for demo fleets, whose players have no other way to get a balance.
    #[arg(long, env = "STARTING_BALANCE")]
    pub starting_balance: Option<i64>,
}

/// The ledger's Redis is checked before the engine takes any bet: it must persist (see
/// [`crate::ledger::durability`]), and its identity marker is read (or written, for a new
/// ledger) so that every later write requires it. Waits for Redis to answer.
async fn guard_ledger(ledger: &RedisLedger, allow_ephemeral: bool) -> Result<(), String> {
    let mut waited = 0u32;
    let persistence = loop {
        match ledger.persistence().await {
            Ok(p) => break p,
            Err(e) => {
                if waited.is_multiple_of(10) {
                    tracing::warn!(error = %e, "waiting for the ledger's Redis");
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let durability = durability::decide(&persistence, allow_ephemeral)?;
    if let Some(w) = &durability.warning {
        tracing::warn!("{w}");
    }
    let (identity, created) = ledger
        .ensure_identity()
        .await
        .map_err(|e| format!("cannot read the ledger's identity: {e}"))?;
    if created {
        tracing::warn!(
            identity,
            "the ledger had no identity marker: a new ledger starts here"
        );
    } else {
        tracing::info!(identity, "ledger identity");
    }
    ledger.require_identity(identity);
    ledger.use_waitaof(durability.waitaof);
    Ok(())
}

fn random_id(role: &str) -> String {
    format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub(crate) fn redis_url(url: Option<&Secret>) -> Result<String, String> {
    match url {
        Some(u) if !u.is_empty() => Ok(u.expose().to_owned()),
        _ => Err("--redis-url (or REDIS_URL) is required".into()),
    }
}

/// SIGTERM or Ctrl-C.
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `/readyz` waits for Redis (and, on a gateway, its pub/sub connection) and fails when it is
/// lost for longer than the grace period; `/healthz` does not look at it.
fn watch_redis(health: &Health, bus: &Arc<RedisBus>, pubsub: bool, stop: &CancellationToken) {
    let bus = Arc::clone(bus);
    admin::watch_dependency(health.dependency("redis"), stop.clone(), move || {
        let bus = Arc::clone(&bus);
        async move { bus.check(pubsub).await }
    });
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(u) => gw.accept(u),
        Err(rejection) => rejection.into_response(),
    }
}

pub async fn run_gateway(args: GatewayCmdArgs) -> Result<(), String> {
    let mut cfg = args.server.gateway.config()?;
    if args.server.gateway.gateway_id.is_none() {
        cfg.gateway_id = random_id("gw");
    }
    let secret = match &args.server.jwt_secret {
        Some(s) if !s.is_empty() => s.expose().as_bytes().to_vec(),
        _ => return Err("--jwt-secret (or JWT_SECRET) is required".into()),
    };
    let page_secret: Arc<[u8]> = Arc::from(secret.as_slice());
    let auth_cfg = args.server.auth_config(secret, std::env::vars(), false)?;
    let auth = Authenticator::with_config(&auth_cfg).map_err(|e| e.to_string())?;
    let url = redis_url(args.server.redis_url.as_ref())?;
    let bus_cfg = args.redis.bus_config(url, cfg.gateway_id.clone())?;
    let bus = RedisBus::connect(bus_cfg).map_err(|e| e.to_string())?;
    let registry = prometheus::Registry::new();
    bus.register_metrics(&registry).map_err(|e| e.to_string())?;
    let health = Arc::new(Health::default());
    let stop = CancellationToken::new();
    watch_redis(&health, &bus, true, &stop);
    let gateway =
        Gateway::new(cfg, bus, auth, &registry, Arc::clone(&health)).map_err(|e| e.to_string())?;
    gateway.start(stop.clone()).map_err(|e| e.to_string())?;
    let player = server::bind(args.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.server.listen))?;
    let admin_l = server::bind(args.server.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.server.admin_listen))?;
    let router = if args.demo_page {
        tracing::warn!("demo page on: /dev/token gives any visitor a token for any user");
        play_page::router(Arc::clone(&gateway), page_secret, TokensFor::Anyone)
    } else {
        Router::new()
            .route("/", any(upgrade))
            .route("/ws", any(upgrade))
            .with_state(Arc::clone(&gateway))
    };
    let admin_router = admin::router(AdminState {
        registry,
        health: Arc::clone(&health),
    })
    .merge(admin::drain_routes(
        Arc::clone(&health),
        args.admin_token.expose(),
    ));
    let opts = gateway.serve_options();
    server::spawn("player", player, router, stop.clone(), opts);
    server::spawn_admin(admin_l, admin_router, stop.clone());
    health.set_ready(true);
    tracing::info!(listen = %args.server.listen, "gateway running");
    // SIGTERM/Ctrl-C or POST /drain: drain, then exit.
    tokio::select! {
        _ = stop_signal() => gateway.begin_drain(),
        _ = health.draining.cancelled() => {}
    }
    tracing::info!("drain requested");
    let budget = gateway.config().drain_timeout + Duration::from_secs(1);
    if tokio::time::timeout(budget, gateway.drained())
        .await
        .is_err()
    {
        tracing::warn!("drain did not finish in time; exiting");
    }
    health.set_ready(false);
    stop.cancel();
    // Connections still open (drain timeout) get their close frames.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

pub async fn run_engine(args: EngineCmdArgs) -> Result<(), String> {
    let url = redis_url(Some(&args.redis_url))?;
    let engine_id = args
        .engine_id
        .clone()
        .unwrap_or_else(|| random_id("engine"));
    let mut bus_cfg = args.redis.bus_config(url.clone(), engine_id.clone())?;
    check_engine_timings(&args)?;
    bus_cfg.lease_ttl = Duration::from_millis(args.lease_ttl_ms);
    bus_cfg.claim_idle = crate::bus::redis::claim_idle(
        bus_cfg.lease_ttl,
        Duration::from_millis(args.result_pause_ms),
    );
    let bus = RedisBus::connect(bus_cfg).map_err(|e| e.to_string())?;
    let health = Arc::new(Health::default());
    let stop = CancellationToken::new();
    watch_redis(&health, &bus, false, &stop);
    let ledger_url = match &args.ledger_redis_url {
        Some(u) if !u.is_empty() => Some(u.expose().to_owned()),
        _ => None,
    };
    let redis_ledger = Arc::new(
        RedisLedger::connect(
            ledger_url.as_deref().unwrap_or(&url),
            args.redis.redis_prefix.clone(),
        )
        .map_err(|e| e.to_string())?
        .with_retention(Duration::from_secs(args.idempotency_retention_secs)),
    );
    watch_ledger(&health, &stop, &redis_ledger, ledger_url.is_some());
    let ledger: Arc<dyn Ledger> = Arc::clone(&redis_ledger) as Arc<dyn Ledger>;
    let registry = prometheus::Registry::new();
    bus.register_metrics(&registry).map_err(|e| e.to_string())?;
    let cfg = engine_config(&args, engine_id)?;
    let admin_l = server::bind(args.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.admin_listen))?;
    let admin_router = admin::router(AdminState {
        registry: registry.clone(),
        health: Arc::clone(&health),
    })
    .merge(ledger_admin::routes(
        Arc::clone(&ledger),
        args.admin_token.expose(),
    ));
    server::spawn_admin(admin_l, admin_router, stop.clone());
    // The admin port answers (alive, not ready) while the ledger's Redis is checked.
    tokio::select! {
        g = guard_ledger(&redis_ledger, args.allow_ephemeral_ledger) => g?,
        _ = stop_signal() => return Ok(()),
    }
    let engine = tokio::spawn(engine::run(bus, ledger, cfg, registry, stop.clone()));
    health.set_ready(true);
    tracing::info!("engine running");
    stop_signal().await;
    health.set_ready(false);
    stop.cancel();
    // Drain: rounds in progress are closed and settled, rooms handed over, then it returns.
    match engine.await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("engine task failed: {e}")),
    }
}

/// The lease and idempotency-retention bounds of `engine`.
fn check_engine_timings(args: &EngineCmdArgs) -> Result<(), String> {
    if args.lease_ttl_ms < 300 {
        return Err(format!(
            "--lease-ttl-ms must be at least 300, got {}",
            args.lease_ttl_ms
        ));
    }
    if args.idempotency_retention_secs < 60 {
        return Err(format!(
            "--idempotency-retention-secs must be at least 60, got {}",
            args.idempotency_retention_secs
        ));
    }
    Ok(())
}

/// Readiness checks of the ledger: its identity, and its Redis when it is not the bus's.
fn watch_ledger(
    health: &Arc<Health>,
    stop: &CancellationToken,
    redis_ledger: &Arc<RedisLedger>,
    separate_redis: bool,
) {
    // Not ready while the ledger's identity is gone (bet intake is halted then).
    {
        let l = Arc::clone(redis_ledger);
        admin::watch_dependency(
            health.dependency("ledger identity"),
            stop.clone(),
            move || {
                let l = Arc::clone(&l);
                // Reachability is the Redis checks' business; this one fails on a lost identity.
                async move {
                    match l.check_identity().await {
                        Err(e @ crate::ledger::LedgerError::IdentityLost(_)) => Err(e.to_string()),
                        _ => Ok(()),
                    }
                }
            },
        );
    }
    // On the bus's Redis the bus check covers the ledger too; a separate one is checked apart.
    if separate_redis {
        let l = Arc::clone(redis_ledger);
        admin::watch_dependency(health.dependency("ledger redis"), stop.clone(), move || {
            let l = Arc::clone(&l);
            async move { l.ping().await.map_err(|e| e.to_string()) }
        });
    }
}

/// The engine's configuration from its command line.
fn engine_config(args: &EngineCmdArgs, engine_id: String) -> Result<EngineConfig, String> {
    let cfg = EngineConfig {
        engine_id,
        betting_window: Duration::from_millis(args.betting_window_ms),
        result_pause: Duration::from_millis(args.result_pause_ms),
        starting_balance: args.starting_balance,
        // Rooms are refreshed (and leases renewed) several times per lease lifetime, and at
        // least every 250 ms so a room another engine gives up is taken over promptly.
        rooms_poll: Duration::from_millis((args.lease_ttl_ms / 4).clamp(50, 250)),
        drain_timeout: args.drain.timeout(ENGINE_DRAIN_TIMEOUT)?,
        ..EngineConfig::default()
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        redis: RedisArgs,
    }

    fn bus_config(args: &[&str]) -> Result<RedisBusConfig, String> {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv)
            .redis
            .bus_config("redis://127.0.0.1/".into(), "gw-1".into())
    }

    #[test]
    fn presence_and_history_bounds_come_from_flags() {
        let cfg = bus_config(&[]).unwrap();
        assert_eq!(cfg.presence_ttl, Duration::from_secs(30));
        assert_eq!(cfg.history.room_entries, 500);
        assert_eq!(cfg.history.user_entries, 50);
        assert_eq!(cfg.history.max_age, Duration::from_secs(90));
        let cfg = bus_config(&[
            "--redis-prefix",
            "fleet-a",
            "--presence-ttl-seconds",
            "7.5",
            "--history-room-entries",
            "2000",
            "--history-user-entries",
            "200",
            "--history-max-age-seconds",
            "600",
        ])
        .unwrap();
        assert_eq!(cfg.prefix, "fleet-a");
        assert_eq!(cfg.node_id, "gw-1");
        assert_eq!(cfg.presence_ttl, Duration::from_millis(7_500));
        assert_eq!(cfg.history.room_entries, 2000);
        assert_eq!(cfg.history.user_entries, 200);
        assert_eq!(cfg.history.max_age, Duration::from_secs(600));
    }

    #[test]
    fn out_of_range_bounds_are_refused_with_the_flag_named() {
        for (args, expected) in [
            (
                vec!["--presence-ttl-seconds", "0.5"],
                "--presence-ttl-seconds must be between 1 and 3600, got 0.5",
            ),
            (
                vec!["--history-room-entries", "0"],
                "--history-room-entries must be between 1 and 100000, got 0",
            ),
            (
                vec!["--history-user-entries", "100001"],
                "--history-user-entries must be between 1 and 100000, got 100001",
            ),
            (
                vec!["--history-max-age-seconds", "0"],
                "--history-max-age-seconds must be between 1 and 86400, got 0",
            ),
        ] {
            assert_eq!(bus_config(&args).unwrap_err(), expected);
        }
    }
}
