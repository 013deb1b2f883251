//! Heartbeat: one sweeper task for all connections (no timer per connection), pinging live
//! ones and closing the silent. The authentication deadline is each connection's own timer
//! (see `connection`), so an anonymous socket lives exactly `auth_timeout`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handle::{CloseCause, Outbound};
use super::state::Gateway;
use crate::clock::mono_ms;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ping,
    Close(CloseCause),
}

/// What to do with a connection at `now` (monotonic ms).
pub fn liveness(now: u64, last_seen: u64, timeout: Duration) -> Verdict {
    if now.saturating_sub(last_seen) > timeout.as_millis() as u64 {
        return Verdict::Close(CloseCause::HeartbeatTimeout);
    }
    Verdict::Ping
}

pub(super) async fn sweep(gw: Arc<Gateway>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(gw.cfg.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = mono_ms();
        for conn in gw.registry.snapshot() {
            match liveness(now, conn.last_seen_ms(), gw.cfg.heartbeat_timeout) {
                Verdict::Ping => {
                    conn.offer(Outbound::Ping);
                }
                Verdict::Close(cause) => conn.kill(cause),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_rules() {
        let t = Duration::from_millis(45_000);
        let cases = [
            (1_000, 0, Verdict::Ping),
            (45_000, 0, Verdict::Ping),
            (45_001, 0, Verdict::Close(CloseCause::HeartbeatTimeout)),
            (100_000, 99_000, Verdict::Ping),
        ];
        for (now, seen, want) in cases {
            assert_eq!(liveness(now, seen, t), want, "now={now} seen={seen}");
        }
    }
}
