//! Graceful drain: stop taking players, tell every connected one to come back elsewhere, and
//! close them spread over a window so their reconnects do not arrive as one storm.
//!
//! The schedule is [`close_schedule`] (pure); [`run`] applies it to the live connections.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::{CloseCause, ConnHandle, Outbound};
use super::state::Gateway;

/// Target gap between two close batches.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Fewest connections per batch (when there are enough): closing one at a time would make
/// the window depend on the connection count instead of the configured spread.
pub const MIN_BATCH: usize = 2;
/// How often the end of the drain (no connections left) is checked.
const POLL: Duration = Duration::from_millis(20);

/// When to close each of `n` connections, as delays from the start of the drain.
///
/// Connections are dealt round-robin into `b` batches (sizes differ by at most one), with
/// `b = clamp(spread / batch_interval, 1, n / MIN_BATCH)`. Batch `j` closes at
/// `spread * (j + u_j) / b`, where `u_j` in `[0, 1)` comes from `jitter`: batches are jittered
/// but stay in order and inside `[0, spread)`.
pub fn close_schedule(
    n: usize,
    spread: Duration,
    batch_interval: Duration,
    mut jitter: impl FnMut() -> f64,
) -> Vec<Duration> {
    if n == 0 {
        return Vec::new();
    }
    let by_time = if batch_interval.is_zero() {
        n
    } else {
        (spread.as_nanos() / batch_interval.as_nanos()).min(n as u128) as usize
    };
    let batches = by_time.min(n / MIN_BATCH).max(1);
    let times: Vec<Duration> = (0..batches)
        .map(|j| {
            let u = jitter().clamp(0.0, 0.999_999);
            spread.mul_f64((j as f64 + u) / batches as f64)
        })
        .collect();
    (0..n).map(|i| times[i % batches]).collect()
}

/// A uniform sample in `[0, 1)` from the OS generator (0.5 if it is unavailable).
fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Drains `gw`: every connection gets `server_draining` now and is closed (1012) at its
/// scheduled time; returns once none is left or `drain_timeout` has passed.
pub(super) async fn run(gw: &Arc<Gateway>) {
    let started = Instant::now();
    let timeout = gw.cfg.drain_timeout;
    // The whole spread must fit in the drain budget.
    let spread = gw.cfg.reconnect_spread.min(timeout);
    gw.metrics.draining.set(1);
    let conns = gw.registry.snapshot();
    tracing::info!(
        connections = conns.len(),
        spread_ms = spread.as_millis() as u64,
        "draining"
    );
    let delays = close_schedule(conns.len(), spread, BATCH_INTERVAL, unit_random);
    let mut batches: BTreeMap<Duration, Vec<Arc<ConnHandle>>> = BTreeMap::new();
    for (conn, delay) in conns.into_iter().zip(delays) {
        conn.offer(Outbound::Draining {
            reconnect_after_ms: delay.as_millis() as u64,
        });
        batches.entry(delay).or_default().push(conn);
    }
    for (delay, batch) in batches {
        tokio::time::sleep_until((started + delay).into()).await;
        for conn in batch {
            conn.kill(CloseCause::Draining);
        }
    }
    // Upgrades that completed while the drain began are not in the first snapshot.
    for conn in gw.registry.snapshot() {
        if conn.killed().is_none() {
            conn.offer(Outbound::Draining {
                reconnect_after_ms: 0,
            });
            conn.kill(CloseCause::Draining);
        }
    }
    while gw.registry.connection_count() > 0 && started.elapsed() < timeout {
        tokio::time::sleep(POLL).await;
    }
    let took = started.elapsed();
    gw.metrics.drain_duration_seconds.set(took.as_secs_f64());
    tracing::info!(
        remaining = gw.registry.connection_count(),
        took_ms = took.as_millis() as u64,
        "drain finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Batch time → connections closed then.
    fn batches(s: &[Duration]) -> BTreeMap<Duration, usize> {
        let mut m = BTreeMap::new();
        for d in s {
            *m.entry(*d).or_default() += 1;
        }
        m
    }

    /// (n, spread ms, batch interval ms, jitter, expected batch count, (smallest, largest) batch)
    type Case = (usize, u64, u64, f64, usize, (usize, usize));

    #[test]
    fn schedule_table() {
        let cases: [Case; 7] = [
            (0, 5_000, 100, 0.5, 0, (0, 0)),
            (1, 5_000, 100, 0.5, 1, (1, 1)),
            (3, 5_000, 100, 0.5, 1, (3, 3)),
            (20, 2_000, 100, 0.5, 10, (2, 2)),
            (2_000, 5_000, 100, 0.5, 50, (40, 40)),
            (2_001, 5_000, 100, 0.0, 50, (40, 41)),
            // No spread configured: one batch, at once.
            (50, 0, 100, 0.9, 1, (50, 50)),
        ];
        for (n, spread, interval, u, want_batches, (min, max)) in cases {
            let s = close_schedule(n, ms(spread), ms(interval), || u);
            assert_eq!(s.len(), n, "n={n}");
            let b = batches(&s);
            assert_eq!(b.len(), want_batches, "n={n} spread={spread}");
            if n > 0 {
                assert_eq!(*b.values().min().unwrap(), min, "n={n}");
                assert_eq!(*b.values().max().unwrap(), max, "n={n}");
            }
            for d in &s {
                assert!(*d < ms(spread.max(1)), "n={n}: {d:?} outside the spread");
            }
        }
    }

    #[test]
    fn batches_cover_the_window_in_order_with_jitter() {
        let mut seq = [0.0, 0.99, 0.5, 0.25].into_iter().cycle();
        let s = close_schedule(2_000, ms(5_000), ms(100), || seq.next().unwrap());
        let times: Vec<Duration> = batches(&s).into_keys().collect();
        assert_eq!(times.len(), 50);
        // Batch j sits in slot j of width spread/b = 100 ms.
        for (j, t) in times.iter().enumerate() {
            assert!(
                *t >= ms(100 * j as u64) && *t < ms(100 * (j as u64 + 1)),
                "{j}: {t:?}"
            );
        }
        assert_eq!(times[0], Duration::ZERO);
        assert!(times[1] > ms(190), "jitter moves batch 1 late in its slot");
        assert!(*times.last().unwrap() >= ms(4_900));
    }

    #[test]
    fn out_of_range_jitter_is_clamped_and_random_jitter_is_in_range() {
        let s = close_schedule(10, ms(1_000), ms(100), || 7.0);
        assert!(s.iter().all(|d| *d < ms(1_000)));
        let s = close_schedule(10, ms(1_000), ms(100), || -3.0);
        assert_eq!(s[0], Duration::ZERO);
        for _ in 0..100 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
