//! Spreads the rounds of different rooms over the round period.
//!
//! Rooms that start together (an engine starting, or taking over a dead engine's rooms) would
//! otherwise close, roll and settle in the same instant forever after: every settlement and
//! result frame of every room in one burst, once per period, and bets arriving during that burst
//! queue behind it. Each room instead gets a fixed phase in the period, derived from its id, and
//! its first round's betting window is lengthened (never shortened) to close on that phase.

use std::time::Duration;

/// A stable 64-bit FNV-1a hash: the same room gets the same phase on every engine and build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How much longer than `window` the first round of `game_id`, opening at `now_ms`, takes bets
/// so that it closes on the room's phase within a period of `window + pause`. Always less than
/// one period.
pub fn first_round_extension(
    game_id: &str,
    now_ms: u64,
    window: Duration,
    pause: Duration,
) -> Duration {
    let period = (window + pause).as_millis() as u64;
    if period == 0 {
        return Duration::ZERO;
    }
    let phase = fnv1a(game_id.as_bytes()) % period;
    let natural_close = now_ms.saturating_add(window.as_millis() as u64);
    let extra = (phase + period - natural_close % period) % period;
    Duration::from_millis(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(800);
    const P: Duration = Duration::from_millis(200);

    #[test]
    fn the_first_round_closes_on_the_rooms_phase_and_is_never_shortened() {
        for now in [0u64, 1, 999, 1_000, 1_764_000_000_123] {
            for room in ["room-0", "room-1", "lobby", ""] {
                let extra = first_round_extension(room, now, W, P);
                assert!(extra < W + P, "{room} at {now}: {extra:?}");
                let close = now + (W + extra).as_millis() as u64;
                // The same room closes on the same phase whenever it starts.
                let phase = close % 1_000;
                let later = now + 12_345;
                let close_later =
                    later + (W + first_round_extension(room, later, W, P)).as_millis() as u64;
                assert_eq!(close_later % 1_000, phase, "{room}");
            }
        }
    }

    #[test]
    fn rooms_starting_together_are_spread_over_the_period() {
        let now = 1_764_000_000_000;
        let mut closes: Vec<u64> = (0..100)
            .map(|i| first_round_extension(&format!("room-{i}"), now, W, P).as_millis() as u64)
            .collect();
        closes.sort_unstable();
        // 100 rooms over 1,000 ms: no 100 ms slice holds more than a third of them.
        let busiest = (0..1_000)
            .step_by(10)
            .map(|start| {
                closes
                    .iter()
                    .filter(|c| (start..start + 100).contains(*c))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            busiest <= 33,
            "busiest 100 ms slice holds {busiest} of 100 rooms"
        );
        assert!(closes.first() != closes.last());
    }

    #[test]
    fn a_zero_period_adds_nothing() {
        assert_eq!(
            first_round_extension("r", 5, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }
}
