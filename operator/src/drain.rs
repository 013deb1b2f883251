//! What the drain budget means for pods (the seam the graceful-drain work plugs into).
//!
//! Pure: the pod settings derived from `spec.drain`, in one place.

use crate::crd::DrainSpec;

/// Extra time after the drain timeout before the kubelet kills a pod: covers process start of
/// shutdown, the last close frames and flushing.
pub const TERMINATION_MARGIN_SECONDS: i64 = 10;

/// `terminationGracePeriodSeconds` for gateway and engine pods.
pub fn termination_grace_period_seconds(drain: &DrainSpec) -> i64 {
    i64::from(drain.timeout_seconds.max(0)) + TERMINATION_MARGIN_SECONDS
}

/// Environment the gameserver reads its drain settings from.
pub fn env(drain: &DrainSpec) -> Vec<(&'static str, String)> {
    vec![
        ("DRAIN_TIMEOUT_SECONDS", drain.timeout_seconds.to_string()),
        (
            "RECONNECT_SPREAD_SECONDS",
            drain.reconnect_spread_seconds.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_is_timeout_plus_margin() {
        let d = DrainSpec {
            timeout_seconds: 30,
            reconnect_spread_seconds: 5,
        };
        assert_eq!(termination_grace_period_seconds(&d), 40);
        let d = DrainSpec {
            timeout_seconds: 1,
            reconnect_spread_seconds: 0,
        };
        assert_eq!(termination_grace_period_seconds(&d), 11);
    }

    #[test]
    fn env_carries_both_settings() {
        let d = DrainSpec {
            timeout_seconds: 45,
            reconnect_spread_seconds: 7,
        };
        assert_eq!(
            env(&d),
            vec![
                ("DRAIN_TIMEOUT_SECONDS", "45".to_string()),
                ("RECONNECT_SPREAD_SECONDS", "7".to_string())
            ]
        );
    }
}
