//! Gateway tuning: [`GatewayConfig`] and the room-name pattern players' `gameId`s must match.

use std::time::Duration;

/// Gateway tuning. Defaults suit production; tests shorten the timers.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Names this gateway on the bus (diagnostics).
    pub gateway_id: String,
    /// Members per room across all gateways (0 = unlimited).
    pub room_capacity: u64,
    /// Rooms one connection may be in at once.
    pub rooms_per_connection: usize,
    /// The room names players may join (matched whole); others get `INVALID_GAME_ID`.
    pub room_pattern: regex::Regex,
    /// Client messages per second per connection (0 = unlimited).
    pub messages_per_second: u32,
    /// Authenticated connections per user on this gateway.
    pub connections_per_user: usize,
    /// Open sockets on the player port (0 = unlimited); the next gets 503.
    pub max_connections: usize,
    /// Open sockets from one client address (0 = unlimited, the default: behind a proxy or
    /// a node's SNAT every player has the same address); the next gets 429.
    pub max_connections_per_ip: usize,
    /// Frames queued per connection before it is closed as a slow consumer.
    pub send_queue: usize,
    /// Largest accepted client frame/message in bytes; larger ones close with 1009.
    pub max_message_bytes: usize,
    pub read_buffer_bytes: usize,
    pub write_buffer_bytes: usize,
    pub heartbeat_interval: Duration,
    /// No frame (pong included) for this long closes the connection.
    pub heartbeat_timeout: Duration,
    /// Connections that have not authenticated within this are closed (4001).
    pub auth_timeout: Duration,
    /// A single flush taking longer than this closes the connection.
    pub write_timeout: Duration,
    /// Longest a drain may take; connections still open then are dropped.
    pub drain_timeout: Duration,
    /// Window over which a drain spreads its closes (capped at `drain_timeout`).
    pub reconnect_spread: Duration,
    /// How long a join waits for the bus to receive its room (a pub/sub connection being
    /// re-established) before it is refused with `ENGINE_UNAVAILABLE`.
    pub subscribe_wait: Duration,
    /// Joins and leaves are told to a room at most once per this interval, as one `presence`
    /// frame per member (zero: one `player_joined`/`player_left` per change, as they come).
    pub presence_interval: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            gateway_id: format!("gateway-{}", uuid::Uuid::new_v4().simple()),
            room_capacity: 1000,
            rooms_per_connection: 10,
            room_pattern: default_room_pattern(),
            messages_per_second: 20,
            connections_per_user: 5,
            max_connections: 20_000,
            max_connections_per_ip: 0,
            send_queue: 256,
            max_message_bytes: 16 * 1024,
            read_buffer_bytes: 2 * 1024,
            write_buffer_bytes: 4 * 1024,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(45),
            auth_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            reconnect_spread: Duration::from_secs(5),
            subscribe_wait: Duration::from_secs(5),
            presence_interval: DEFAULT_PRESENCE_INTERVAL,
        }
    }
}

/// How often a room is told its joins and leaves, unless configured.
pub const DEFAULT_PRESENCE_INTERVAL: Duration = Duration::from_millis(250);

/// Room names unless configured: a letter or digit, then up to 63 of letters, digits and
/// `_ . : -` (what fits the protocol's 64-character `gameId`).
pub const DEFAULT_ROOM_PATTERN: &str = "[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}";

/// `pattern` matched against a whole room name.
pub fn room_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

fn default_room_pattern() -> regex::Regex {
    room_pattern(DEFAULT_ROOM_PATTERN).expect("DEFAULT_ROOM_PATTERN compiles (tested below)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_patterns_match_whole_names() {
        let d = default_room_pattern();
        for ok in ["dice-1", "g", "lobby:eu.7", &"a".repeat(64)] {
            assert!(d.is_match(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "ü", &"a".repeat(65), "x\n"] {
            assert!(!d.is_match(bad), "{bad:?}");
        }
        let listed = room_pattern("dice-[1-4]|lobby").unwrap();
        assert!(listed.is_match("dice-3") && listed.is_match("lobby"));
        assert!(!listed.is_match("dice-30") && !listed.is_match("xlobby"));
        assert!(room_pattern("(").is_err());
    }
}
