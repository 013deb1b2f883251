//! Per-connection and per-room limits as pure decisions.

/// Fixed one-second window message counter. Only the first message over the limit in a window
/// is answered (`RATE_LIMITED`); the rest are dropped silently so a flood cannot make the
/// server flood back.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: u32,
    window_start_ms: u64,
    count: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Over the limit: reply `RATE_LIMITED`.
    Reject,
    /// Over the limit and already told in this window: drop without a reply.
    Drop,
}

impl RateLimiter {
    /// `per_second == 0` disables the limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window_start_ms: 0,
            count: 0,
        }
    }

    pub fn admit(&mut self, now_ms: u64) -> Admission {
        if self.per_second == 0 {
            return Admission::Allow;
        }
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 || self.count == 0 {
            self.window_start_ms = now_ms;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        if self.count <= self.per_second {
            Admission::Allow
        } else if self.count == self.per_second + 1 {
            Admission::Reject
        } else {
            Admission::Drop
        }
    }
}

/// After joining, the bus reports `members_after_join` across all gateways; the join stands
/// only if that is within capacity (otherwise it is undone and answered `ROOM_FULL`).
/// `capacity == 0` means unlimited.
pub fn room_admits(members_after_join: u64, capacity: u64) -> bool {
    capacity == 0 || members_after_join <= capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::new(3);
        let got: Vec<_> = [0, 10, 20, 30, 40, 999, 1000, 1001, 1002, 1003]
            .into_iter()
            .map(|t| r.admit(t))
            .collect();
        use Admission::*;
        assert_eq!(
            got,
            [Allow, Allow, Allow, Reject, Drop, Drop, Allow, Allow, Allow, Reject]
        );
    }

    #[test]
    fn zero_disables_the_rate_limit() {
        let mut r = RateLimiter::new(0);
        assert!((0..10_000).all(|_| r.admit(5) == Admission::Allow));
    }

    #[test]
    fn room_admission() {
        let cases = [
            (1, 1, true),
            (2, 1, false),
            (100, 100, true),
            (101, 100, false),
            (5, 0, true),
        ];
        for (members, cap, want) in cases {
            assert_eq!(room_admits(members, cap), want, "{members}/{cap}");
        }
    }
}
