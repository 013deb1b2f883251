//! `gameserver local`: gateway and engine in one process over the in-memory bus and ledger,
//! plus the dice page and a dev-token endpoint for trying it in a browser. With `--redis-url`
//! the same process uses the Redis bus and ledger instead, so it can join (or inspect) a fleet's
//! Redis and its state survives a restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Health};
use crate::auth::Authenticator;
use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::bus::{EngineBus, GatewayBus};
use crate::cli::args::{Secret, ServerArgs};
use crate::distributed::RedisArgs;
use crate::engine::{self, EngineConfig};
use crate::gateway::Gateway;
use crate::ledger::{admin as ledger_admin, Ledger, MemoryLedger, RedisLedger};
use crate::play_page::{self, TokensFor};
use crate::server;

pub use crate::play_page::CLIENT_JS;

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Minor units credited to every new player so a fresh user can bet.
    #[arg(long, env = "STARTING_BALANCE", default_value_t = 100_000)]
    pub starting_balance: i64,
    /// How long each round takes bets, milliseconds.
    #[arg(long, env = "BETTING_WINDOW_MS", default_value_t = 4_000)]
    pub betting_window_ms: u64,
    /// Pause between a round's result and the next round, milliseconds.
    #[arg(long, env = "RESULT_PAUSE_MS", default_value_t = 1_000)]
    pub result_pause_ms: u64,
    /// Bearer token for the admin ledger API (credit/debit); unset leaves it disabled (503).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "")]
    pub admin_token: Secret,
}

/// A running local-mode process (also used by tests, with port 0).
pub struct LocalServer {
    pub player_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub health: Arc<Health>,
    /// The engine task; it ends after the shutdown token is cancelled and its rounds drained.
    pub engine: tokio::task::JoinHandle<()>,
}

pub async fn run(args: LocalArgs) -> Result<(), String> {
    let shutdown = CancellationToken::new();
    let local = start(&args, shutdown.clone()).await?;
    let host = match local.player_addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        ip => ip.to_string(),
    };
    println!(
        "GameFleet local mode: open http://{host}:{}/ (admin on http://{})",
        local.player_addr.port(),
        local.admin_addr
    );
    // Ctrl-C/SIGTERM or POST /drain: drain the gateway (players are told to reconnect), then stop.
    tokio::select! {
        _ = crate::distributed::stop_signal() => local.gateway.begin_drain(),
        _ = local.health.draining.cancelled() => {}
    }
    let budget = local.gateway.config().drain_timeout + Duration::from_secs(1);
    if tokio::time::timeout(budget, local.gateway.drained())
        .await
        .is_err()
    {
        tracing::warn!("drain did not finish in time");
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    // Rounds in progress settle; connections get a moment to receive their close frames.
    let _ = local.engine.await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Ok(())
}

pub async fn start(args: &LocalArgs, shutdown: CancellationToken) -> Result<LocalServer, String> {
    let cfg = args.server.gateway.config()?;
    // Local mode needs no configuration: without a secret, tokens are signed with a random one
    // that only this process (and its dev-token endpoint) knows.
    let secret: Arc<[u8]> = match &args.server.jwt_secret {
        Some(s) if !s.is_empty() => Arc::from(s.expose().as_bytes()),
        _ => Arc::from(
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
            .as_bytes(),
        ),
    };
    // A development mode: any secret will do.
    let auth_cfg = args
        .server
        .auth_config(secret.to_vec(), std::env::vars(), true)?;
    let auth = Authenticator::with_config(&auth_cfg).map_err(|e| e.to_string())?;
    let registry = prometheus::Registry::new();
    let health = Arc::new(Health::default());
    let (gateway_bus, engine_bus, ledger) = buses(args, &cfg.gateway_id, &registry)?;
    let engine_cfg = EngineConfig {
        engine_id: "local-engine".into(),
        betting_window: Duration::from_millis(args.betting_window_ms),
        result_pause: Duration::from_millis(args.result_pause_ms),
        starting_balance: Some(args.starting_balance),
        ..EngineConfig::default()
    };
    engine_cfg.validate().map_err(|e| e.to_string())?;
    let gateway = Gateway::new(cfg, gateway_bus, auth, &registry, Arc::clone(&health))
        .map_err(|e| e.to_string())?;
    gateway.start(shutdown.clone()).map_err(|e| e.to_string())?;
    let engine = {
        let (ledger, registry, shutdown) =
            (Arc::clone(&ledger), registry.clone(), shutdown.clone());
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            if let Err(e) = engine::run(engine_bus, ledger, engine_cfg, registry, shutdown).await {
                tracing::error!(error = %e, "engine stopped");
                health.set_ready(false);
            }
        })
    };

    let player = server::bind(args.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.server.listen))?;
    let admin_listener = server::bind(args.server.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.server.admin_listen))?;
    let player_addr = player.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;

    let player_router = play_page::router(Arc::clone(&gateway), secret, TokensFor::Loopback);
    let admin_router = admin::router(AdminState {
        registry,
        health: Arc::clone(&health),
    })
    .merge(ledger_admin::routes(ledger, args.admin_token.expose()))
    .merge(admin::drain_routes(
        Arc::clone(&health),
        args.admin_token.expose(),
    ));
    let opts = gateway.serve_options();
    server::spawn("player", player, player_router, shutdown.clone(), opts);
    server::spawn_admin(admin_listener, admin_router, shutdown);
    health.set_ready(true);
    Ok(LocalServer {
        player_addr,
        admin_addr,
        gateway,
        health,
        engine,
    })
}

type Buses = (Arc<dyn GatewayBus>, Arc<dyn EngineBus>, Arc<dyn Ledger>);

/// In-memory bus and ledger, or Redis ones when `--redis-url` is given.
fn buses(
    args: &LocalArgs,
    node_id: &str,
    registry: &prometheus::Registry,
) -> Result<Buses, String> {
    let url = match &args.server.redis_url {
        Some(u) if !u.is_empty() => u.expose().to_owned(),
        _ => {
            let bus = Arc::new(MemoryBus::with_limits(args.redis.history.limits()?));
            return Ok((bus.clone(), bus, Arc::new(MemoryLedger::new())));
        }
    };
    let prefix = args.redis.redis_prefix.clone();
    let bus_cfg = args.redis.bus_config(url.clone(), node_id.to_owned())?;
    let bus = RedisBus::connect(bus_cfg).map_err(|e| e.to_string())?;
    bus.register_metrics(registry).map_err(|e| e.to_string())?;
    let ledger = RedisLedger::connect(&url, prefix).map_err(|e| e.to_string())?;
    tracing::info!(prefix = %args.redis.redis_prefix, "local mode over Redis");
    Ok((bus.clone(), bus, Arc::new(ledger)))
}
