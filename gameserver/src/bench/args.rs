//! The command line of `gameserver bench` and what follows from it: how many workers and
//! source addresses, which connections each worker owns, which rooms each connection joins.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Arguments of `gameserver bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Gateway WebSocket URL (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Total connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Rooms to spread the connections over (connection i joins room i mod rooms).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Rooms each connection joins: room i mod rooms and the ones rooms/k apart from it
    /// (k of them, all distinct). Bets go to them in turn.
    #[arg(long, default_value_t = 1)]
    pub rooms_per_player: usize,
    /// Worker processes; 0 picks one per 15,000 connections.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N to bind client sockets to; 0 picks one per
    /// 20,000 connections.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// Secret to mint player tokens with (must match the gateway's).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// New connections per second, across all workers.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// Seconds to measure after every connection is up (SIGINT/SIGTERM ends it early; the
    /// run then settles and reports as usual).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds to wait after every connection is up before measuring, so the join storm (every
    /// join is announced to the room) is not counted as event delivery latency.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Bets per second across all connections (0: only hold and receive).
    #[arg(long, default_value_t = 0)]
    pub bet_rate: u32,
    /// Bet amount in minor units.
    #[arg(long, default_value_t = 1)]
    pub bet_amount: i64,
    /// Prefix of the user ids (distinct runs against one ledger should differ).
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,
    /// PID of the server, to report its resident memory per connection.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Survive drains and failures: after `server_draining`/close 1012 (or any close), reconnect
    /// to the same URL (in Kubernetes, the Service), send `resume` with the last room and inbox
    /// positions, and re-send unacknowledged bets with the same idempotencyKey. Reports
    /// reconnects, close→resumed latency (p50/p95/p99) and exactly-once bet accounting
    /// (acknowledged vs settled, settled twice, duplicate or missing frames).
    #[arg(long)]
    pub resume: bool,
    /// After measuring, wait up to this many seconds for every sent bet to be settled (or
    /// rejected) before counting the ones still outstanding.
    #[arg(long, default_value_t = 10)]
    pub settle_wait: u64,
    /// Print the merged report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Internal: run as worker K of the coordinator.
    #[arg(long, hide = true)]
    pub worker_index: Option<usize>,
}

impl BenchArgs {
    pub(super) fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            self.connections.div_ceil(15_000).max(1)
        }
    }

    pub(super) fn source_addrs(&self) -> Vec<Ipv4Addr> {
        let n = if self.source_ips > 0 {
            self.source_ips
        } else {
            u8::try_from(self.connections.div_ceil(20_000).max(1)).unwrap_or(u8::MAX)
        };
        (1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
    }

    /// The connection indices worker `k` of `n` owns.
    pub(super) fn share(&self, k: usize, n: usize) -> std::ops::Range<usize> {
        let start = self.connections * k / n;
        let end = self.connections * (k + 1) / n;
        start..end
    }

    /// The rooms connection `i` joins.
    pub(super) fn rooms_of(&self, i: usize) -> Vec<String> {
        let k = self.rooms_per_player.clamp(1, self.rooms.max(1));
        let stride = self.rooms / k;
        (0..k)
            .map(|j| format!("room-{}", (i + j * stride) % self.rooms))
            .collect()
    }

    pub(super) fn measure_for(&self) -> Duration {
        Duration::from_secs(self.duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench", "--jwt-secret", "s"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn shares_cover_every_connection_exactly_once() {
        let a = args(&["--connections", "10001"]);
        let n = 3;
        let mut covered = 0;
        let mut next = 0;
        for k in 0..n {
            let r = a.share(k, n);
            assert_eq!(r.start, next);
            next = r.end;
            covered += r.len();
        }
        assert_eq!(covered, 10001);
        assert_eq!(next, 10001);
    }

    #[test]
    fn each_player_joins_distinct_rooms_spread_evenly() {
        assert_eq!(args(&["--rooms", "40"]).rooms_of(41), ["room-1"]);
        let a = args(&["--rooms", "40", "--rooms-per-player", "2"]);
        assert_eq!(a.rooms_of(3), ["room-3", "room-23"]);
        assert_eq!(a.rooms_of(25), ["room-25", "room-5"]);
        let mut members = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..2000 {
            let rooms = a.rooms_of(i);
            let distinct: std::collections::BTreeSet<&String> = rooms.iter().collect();
            assert_eq!(distinct.len(), 2, "{rooms:?}");
            for r in rooms {
                *members.entry(r).or_default() += 1;
            }
        }
        assert_eq!(members.len(), 40);
        assert!(members.values().all(|&n| n == 100), "{members:?}");
        let all = args(&["--rooms", "3", "--rooms-per-player", "3"]);
        assert_eq!(all.rooms_of(1), ["room-1", "room-2", "room-0"]);
    }

    #[test]
    fn defaults_scale_workers_and_source_addresses_with_connections() {
        assert_eq!(args(&["--connections", "19000"]).worker_count(), 2);
        assert_eq!(args(&["--connections", "100"]).worker_count(), 1);
        assert_eq!(args(&["--connections", "100000"]).source_addrs().len(), 5);
        assert_eq!(
            args(&["--source-ips", "2"]).source_addrs(),
            [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)]
        );
    }
}
