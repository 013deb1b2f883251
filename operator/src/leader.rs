//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does:
//! the holder renews `renewTime` every renew interval; a candidate takes the Lease once
//! `renewTime + leaseDurationSeconds` has passed. Writes are optimistic (resourceVersion), so two
//! candidates racing for an expired Lease cannot both win.
//!
//! The decision is pure ([`decide`], [`next_spec`]); [`LeaderElector`] does the I/O.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;

use crate::error::is_conflict;

/// Leader-election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique per replica (the pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews (well below `lease_duration`).
    pub renew_interval: Duration,
}

/// What a replica should do with the Lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Free or expired: take it.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else holds a valid Lease.
    Wait { holder: String },
}

/// Pure decision from the current Lease spec.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last {
        Some(last) if last + duration > now => Decision::Wait {
            holder: holder.to_string(),
        },
        _ => Decision::Acquire,
    }
}

/// The Lease spec to write after `decision` (never called with `Wait`).
pub fn next_spec(
    prev: Option<&LeaseSpec>,
    cfg: &LeaseConfig,
    decision: &Decision,
    now: Timestamp,
) -> LeaseSpec {
    let duration = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let transitions = prev.and_then(|p| p.lease_transitions).unwrap_or(0);
    let prev_holder = prev
        .and_then(|p| p.holder_identity.clone())
        .unwrap_or_default();
    match decision {
        Decision::Renew => LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration),
            ..prev.cloned().unwrap_or_default()
        },
        _ => LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(if prev_holder.is_empty() || prev_holder == cfg.identity {
                transitions
            } else {
                transitions + 1
            }),
            ..Default::default()
        },
    }
}

/// Acquires, renews and releases the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl LeaderElector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// One attempt: `Ok(true)` when this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(next_spec(None, &self.cfg, &Decision::Acquire, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let decision = decide(lease.spec.as_ref(), &self.cfg.identity, now);
        if let Decision::Wait { .. } = decision {
            return Ok(false);
        }
        let updated = Lease {
            spec: Some(next_spec(lease.spec.as_ref(), &self.cfg, &decision, now)),
            ..lease
        };
        // `replace` carries the resourceVersion we read: a concurrent writer makes this 409.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on clean shutdown) so a standby takes over at once, not after expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.cfg.identity.as_str());
        if !ours {
            return Ok(());
        }
        let mut spec = lease.spec.clone().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let updated = Lease {
            spec: Some(spec),
            ..lease
        };
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn spec(holder: Option<&str>, renew: Option<i64>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: renew.map(|s| MicroTime(ts(s))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(2),
            ..Default::default()
        }
    }

    fn cfg() -> LeaseConfig {
        LeaseConfig {
            name: "gamefleet-operator".into(),
            namespace: "ops".into(),
            identity: "op-a".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn decide_table() {
        let wait_b = Decision::Wait {
            holder: "op-b".into(),
        };
        let cases = [
            ("no lease", None, 100, Decision::Acquire),
            (
                "no holder",
                Some(spec(None, Some(90), 15)),
                100,
                Decision::Acquire,
            ),
            (
                "empty holder",
                Some(spec(Some(""), Some(90), 15)),
                100,
                Decision::Acquire,
            ),
            (
                "ours",
                Some(spec(Some("op-a"), Some(10), 15)),
                100,
                Decision::Renew,
            ),
            (
                "other, fresh",
                Some(spec(Some("op-b"), Some(90), 15)),
                100,
                wait_b.clone(),
            ),
            (
                "other, on the edge",
                Some(spec(Some("op-b"), Some(86), 15)),
                100,
                wait_b,
            ),
            (
                "other, expired",
                Some(spec(Some("op-b"), Some(85), 15)),
                100,
                Decision::Acquire,
            ),
            (
                "other, never renewed",
                Some(spec(Some("op-b"), None, 15)),
                100,
                Decision::Acquire,
            ),
        ];
        for (name, s, now, want) in cases {
            assert_eq!(decide(s.as_ref(), "op-a", ts(now)), want, "{name}");
        }
    }

    #[test]
    fn acquiring_from_another_holder_counts_a_transition() {
        let prev = spec(Some("op-b"), Some(80), 15);
        let s = next_spec(Some(&prev), &cfg(), &Decision::Acquire, ts(100));
        assert_eq!(s.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(s.lease_transitions, Some(3));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(100))));
        assert_eq!(s.renew_time, Some(MicroTime(ts(100))));
        assert_eq!(s.lease_duration_seconds, Some(15));
    }

    #[test]
    fn first_acquire_and_released_lease_do_not_count_transitions() {
        let s = next_spec(None, &cfg(), &Decision::Acquire, ts(100));
        assert_eq!(s.lease_transitions, Some(0));
        let released = spec(None, Some(80), 1);
        let s = next_spec(Some(&released), &cfg(), &Decision::Acquire, ts(100));
        assert_eq!(s.lease_transitions, Some(2));
    }

    #[test]
    fn renew_moves_only_renew_time() {
        let mut prev = spec(Some("op-a"), Some(90), 15);
        prev.acquire_time = Some(MicroTime(ts(50)));
        let s = next_spec(Some(&prev), &cfg(), &Decision::Renew, ts(100));
        assert_eq!(s.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(s.acquire_time, Some(MicroTime(ts(50))));
        assert_eq!(s.renew_time, Some(MicroTime(ts(100))));
        assert_eq!(s.lease_transitions, Some(2));
    }
}
