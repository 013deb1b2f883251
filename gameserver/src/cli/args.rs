//! Flags shared by the server subcommands (each with an environment fallback).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::gateway::GatewayConfig;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Player WebSocket address.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Admin HTTP address (/metrics, /healthz, /readyz).
    #[arg(long, env = "ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// HS256 secret for player tokens (never logged).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Redis URL for the distributed bus and ledger: `redis://…`, or a Redis Cluster's nodes,
    /// `redis+cluster://h1:p1,h2:p2`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Required `aud` claim of player tokens (unset: not checked).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim of player tokens (unset: not checked).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Start with a JWT secret under 32 bytes or equal to the examples' placeholder
    /// (development only; local mode always allows it).
    #[arg(long, env = "ALLOW_INSECURE_SECRET")]
    pub allow_insecure_secret: bool,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// Named verification keys come from the environment: `JWT_KEY_<kid>=<secret>` for each key
/// (what a Secret mounted with `envFrom` and this prefix gives).
pub const JWT_KEY_ENV_PREFIX: &str = "JWT_KEY_";

impl ServerArgs {
    /// The keys and claims player tokens are verified with. `secret` is the primary secret;
    /// named keys are read from `env` (`JWT_KEY_<kid>`). Weak secrets are refused unless
    /// `--allow-insecure-secret` or `dev`.
    pub fn auth_config(
        &self,
        secret: Vec<u8>,
        env: impl IntoIterator<Item = (String, String)>,
        dev: bool,
    ) -> Result<crate::auth::AuthConfig, String> {
        let mut keys: Vec<(String, Vec<u8>)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let kid = k.strip_prefix(JWT_KEY_ENV_PREFIX)?;
                Some((kid.to_owned(), v.into_bytes()))
            })
            .collect();
        keys.sort();
        if let Some((kid, _)) = keys.iter().find(|(kid, v)| kid.is_empty() || v.is_empty()) {
            return Err(format!(
                "{JWT_KEY_ENV_PREFIX}{kid}: a named JWT key needs a non-empty key id and secret"
            ));
        }
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let cfg = crate::auth::AuthConfig {
            secret,
            keys,
            audience: nonempty(&self.jwt_audience),
            issuer: nonempty(&self.jwt_issuer),
        };
        if !(dev || self.allow_insecure_secret) {
            for (name, s) in cfg.secrets() {
                crate::auth::check_secret(&name, s).map_err(|e| e.to_string())?;
            }
        }
        Ok(cfg)
    }
}

#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Gateway name on the bus (default: random).
    #[arg(long, env = "GATEWAY_ID")]
    pub gateway_id: Option<String>,
    /// Members per room across all gateways (0 = unlimited).
    #[arg(long, env = "ROOM_CAPACITY", default_value_t = 1000)]
    pub room_capacity: u64,
    /// Rooms one connection may be in at once.
    #[arg(long, env = "ROOMS_PER_CONNECTION", default_value_t = 10)]
    pub rooms_per_connection: usize,
    /// Room names players may join: a regular expression matched against the whole
    /// `gameId` (e.g. `dice-[0-9]{1,3}` or `lobby|vip`).
    #[arg(long, env = "ROOM_PATTERN", default_value = crate::gateway::DEFAULT_ROOM_PATTERN)]
    pub room_pattern: String,
    /// Client messages per second per connection (0 = unlimited).
    #[arg(long, env = "MESSAGES_PER_SECOND", default_value_t = 20)]
    pub messages_per_second: u32,
    /// Authenticated connections per user on one gateway.
    #[arg(long, env = "CONNECTIONS_PER_USER", default_value_t = 5)]
    pub connections_per_user: usize,
    /// Open sockets on the player port (0 = unlimited); the next is answered 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Open sockets from one client IP address (0 = unlimited); the next is answered 429.
    /// Only for gateways that see players' own addresses (not behind a proxy or SNAT).
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,
    /// Frames queued per connection before it is closed as a slow consumer.
    #[arg(long, env = "SEND_QUEUE", default_value_t = 256)]
    pub send_queue: usize,
    /// WebSocket ping interval, milliseconds.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 30_000)]
    pub heartbeat_interval_ms: u64,
    /// Close a connection silent for this long (no pong, no message), milliseconds.
    #[arg(long, env = "HEARTBEAT_TIMEOUT_MS", default_value_t = 45_000)]
    pub heartbeat_timeout_ms: u64,
    /// Close connections that do not authenticate within this, milliseconds.
    #[arg(long, env = "AUTH_TIMEOUT_MS", default_value_t = 10_000)]
    pub auth_timeout_ms: u64,
    #[command(flatten)]
    pub drain: DrainArgs,
    /// Window over which a drain spreads its connection closes (1012), seconds; capped at the
    /// drain timeout.
    #[arg(long, env = "RECONNECT_SPREAD_SECONDS", default_value_t = 5.0)]
    pub reconnect_spread_seconds: f64,
    /// Tell each room its joins and leaves at most once per this interval, as one `presence`
    /// frame, milliseconds (0: one `player_joined`/`player_left` per change, as they come).
    #[arg(long, env = "PRESENCE_INTERVAL_MS", default_value_t = 250)]
    pub presence_interval_ms: u64,
}

/// The drain budget, one name for gateways and engines (the operator sets it from
/// `drain.timeoutSeconds` on both).
#[derive(Args, Debug, Clone, Default)]
pub struct DrainArgs {
    /// Longest a drain (SIGTERM; on a gateway also POST /drain) may take before the process
    /// exits anyway, seconds [default: gateway 30, engine 20]. Keep it below the pod's
    /// termination grace period.
    #[arg(long, env = "DRAIN_TIMEOUT_SECONDS")]
    pub drain_timeout_seconds: Option<f64>,
    /// Deprecated spelling of --drain-timeout-seconds in milliseconds (engines used to read
    /// it); --drain-timeout-seconds wins when both are set.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", hide = true)]
    pub drain_timeout_ms: Option<u64>,
}

impl DrainArgs {
    /// The configured drain timeout, or this role's `default`.
    pub fn timeout(&self, default: Duration) -> Result<Duration, String> {
        match (self.drain_timeout_seconds, self.drain_timeout_ms) {
            (Some(s), _) => seconds("--drain-timeout-seconds", s),
            (None, Some(ms)) => seconds("--drain-timeout-ms", ms as f64 / 1000.0),
            (None, None) => Ok(default),
        }
    }
}

fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        return Err(format!(
            "{flag} must be a number of seconds between 0 and 86400, got {v}"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A gateway's drain timeout unless configured.
pub const GATEWAY_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// An engine's drain timeout unless configured.
pub const ENGINE_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

impl GatewayArgs {
    pub fn config(&self) -> Result<GatewayConfig, String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("--heartbeat-interval-ms must be > 0, got 0".into());
        }
        if self.heartbeat_timeout_ms < self.heartbeat_interval_ms {
            return Err(format!(
                "--heartbeat-timeout-ms ({}) must be at least --heartbeat-interval-ms ({})",
                self.heartbeat_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.send_queue == 0 {
            return Err("--send-queue must be > 0, got 0".into());
        }
        if self.rooms_per_connection == 0 {
            return Err("--rooms-per-connection must be > 0, got 0".into());
        }
        if self.connections_per_user == 0 {
            return Err("--connections-per-user must be > 0, got 0".into());
        }
        let room_pattern = crate::gateway::room_pattern(&self.room_pattern)
            .map_err(|e| format!("--room-pattern {:?}: {e}", self.room_pattern))?;
        let drain_timeout = self.drain.timeout(GATEWAY_DRAIN_TIMEOUT)?;
        let reconnect_spread =
            seconds("--reconnect-spread-seconds", self.reconnect_spread_seconds)?;
        let mut cfg = GatewayConfig {
            drain_timeout,
            reconnect_spread,
            room_capacity: self.room_capacity,
            rooms_per_connection: self.rooms_per_connection,
            room_pattern,
            messages_per_second: self.messages_per_second,
            connections_per_user: self.connections_per_user,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            send_queue: self.send_queue,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(self.heartbeat_timeout_ms),
            auth_timeout: Duration::from_millis(self.auth_timeout_ms),
            presence_interval: Duration::from_millis(self.presence_interval_ms),
            ..GatewayConfig::default()
        };
        if let Some(id) = &self.gateway_id {
            cfg.gateway_id = id.clone();
        }
        Ok(cfg)
    }
}

/// A secret from the command line or environment; its `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn server(args: &[&str]) -> ServerArgs {
        let mut all = vec!["x"];
        all.extend_from_slice(args);
        Cli::parse_from(all).server
    }

    #[test]
    fn weak_secrets_are_refused_unless_allowed_and_named_keys_come_from_the_env() {
        let strong = vec![b'k'; 32];
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let err = server(&[])
            .auth_config(b"short".to_vec(), [], false)
            .unwrap_err();
        assert!(err.contains("at least 32"), "{err}");
        let example = crate::auth::EXAMPLE_SECRETS[0].as_bytes().to_vec();
        let err = server(&[])
            .auth_config(example.clone(), [], false)
            .unwrap_err();
        assert!(err.contains("example placeholder"), "{err}");
        assert!(server(&["--allow-insecure-secret"])
            .auth_config(example.clone(), [], false)
            .is_ok());
        assert!(server(&[]).auth_config(example, [], true).is_ok());
        // A weak named key is refused too, and named as such.
        let keys = env(&[("JWT_KEY_2026-12", "tiny"), ("PATH", "/bin")]);
        let err = server(&[])
            .auth_config(strong.clone(), keys, false)
            .unwrap_err();
        assert!(err.contains("JWT key \"2026-12\""), "{err}");
        let long = "x".repeat(40);
        let keys = env(&[("JWT_KEY_b", &long), ("JWT_KEY_a", &long), ("HOME", "/")]);
        let cfg = server(&["--jwt-audience", "dice", "--jwt-issuer", "login"])
            .auth_config(strong, keys, false)
            .unwrap();
        let kids: Vec<&str> = cfg.keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(cfg.audience.as_deref(), Some("dice"));
        assert_eq!(cfg.issuer.as_deref(), Some("login"));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cli = Cli::parse_from([
            "x",
            "--jwt-secret",
            "hunter2",
            "--redis-url",
            "redis://u:pw@h",
        ]);
        let shown = format!("{cli:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@h"),
            "{shown}"
        );
        assert_eq!(cli.server.jwt_secret.unwrap().expose(), "hunter2");
    }

    #[test]
    fn limits_are_validated_with_clear_messages() {
        let cli = Cli::parse_from([
            "x",
            "--heartbeat-interval-ms",
            "500",
            "--heartbeat-timeout-ms",
            "100",
        ]);
        let err = cli.server.gateway.config().unwrap_err();
        assert!(err.contains("--heartbeat-timeout-ms (100)"), "{err}");
        let cli = Cli::parse_from(["x", "--send-queue", "0"]);
        assert_eq!(
            cli.server.gateway.config().unwrap_err(),
            "--send-queue must be > 0, got 0"
        );
        let cli = Cli::parse_from([
            "x",
            "--room-capacity",
            "7",
            "--heartbeat-interval-ms",
            "100",
            "--heartbeat-timeout-ms",
            "300",
        ]);
        let cfg = cli.server.gateway.config().unwrap();
        assert_eq!(cfg.drain_timeout, Duration::from_secs(30));
        assert_eq!(cfg.reconnect_spread, Duration::from_secs(5));
        assert_eq!(cfg.room_capacity, 7);
        assert_eq!(cfg.heartbeat_timeout, Duration::from_millis(300));
        assert_eq!(cfg.presence_interval, Duration::from_millis(250));
        let cli = Cli::parse_from(["x", "--presence-interval-ms", "0"]);
        let cfg = cli.server.gateway.config().unwrap();
        assert!(cfg.presence_interval.is_zero());
        let cli = Cli::parse_from(["x", "--reconnect-spread-seconds", "0.5"]);
        let cfg = cli.server.gateway.config().unwrap();
        assert_eq!(cfg.reconnect_spread, Duration::from_millis(500));
        let cli = Cli::parse_from(["x", "--drain-timeout-seconds=-1"]);
        assert_eq!(
            cli.server.gateway.config().unwrap_err(),
            "--drain-timeout-seconds must be a number of seconds between 0 and 86400, got -1"
        );
    }

    #[test]
    fn one_drain_timeout_name_with_the_old_milliseconds_as_fallback() {
        #[derive(Parser, Debug)]
        struct Drain {
            #[command(flatten)]
            drain: DrainArgs,
        }
        let timeout = |args: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(args);
            Drain::parse_from(argv).drain.timeout(ENGINE_DRAIN_TIMEOUT)
        };
        assert_eq!(timeout(&[]), Ok(Duration::from_secs(20)));
        assert_eq!(
            timeout(&["--drain-timeout-seconds", "45"]),
            Ok(Duration::from_secs(45))
        );
        assert_eq!(
            timeout(&["--drain-timeout-ms", "1500"]),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            timeout(&["--drain-timeout-ms", "1500", "--drain-timeout-seconds", "2"]),
            Ok(Duration::from_secs(2)),
            "the current name wins"
        );
        assert!(timeout(&["--drain-timeout-ms", "99999999999"])
            .unwrap_err()
            .starts_with("--drain-timeout-ms must be"));
        let cli = Cli::parse_from(["x", "--drain-timeout-ms", "2500"]);
        let cfg = cli.server.gateway.config().unwrap();
        assert_eq!(cfg.drain_timeout, Duration::from_millis(2500));
    }
}
