//! Which pods to read and how to turn their scrapes into the decision's inputs. Pure.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use super::calc::{self, Buckets, PodValues};
use super::decide::{EngineLoad, GatewayLoad};
use super::scrape::PodMetrics;

/// The annotation the ReplicaSet controller reads to pick pods to remove (lowest first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A tier's pods, split as the HPA splits them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierPods {
    /// Ready pods to scrape: (name, admin address).
    pub ready: Vec<(String, SocketAddr)>,
    /// Pods that exist, are not terminating and are not ready.
    pub unready: usize,
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Splits pods into ready (with an IP) and unready; terminating and finished pods are left out
/// (a terminating gateway's clients are moving elsewhere).
pub fn classify(pods: &[Pod], admin_port: i32) -> TierPods {
    let mut out = TierPods::default();
    let port = u16::try_from(admin_port).unwrap_or(0);
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let ip: Option<IpAddr> = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        match (is_ready(p), ip, p.metadata.name.clone()) {
            (true, Some(ip), Some(name)) => out.ready.push((name, SocketAddr::new(ip, port))),
            _ => out.unready += 1,
        }
    }
    out.ready.sort();
    out
}

/// What is kept of a pod's previous scrape (for deltas and rates).
#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    pub latency: Option<Buckets>,
    pub settled: Option<(f64, Instant)>,
}

/// Gateway load from this round's scrapes; updates `prev` (pods that are gone are forgotten).
pub fn gateway_load(
    scrapes: &[(String, Option<PodMetrics>)],
    unready: usize,
    prev: &mut HashMap<String, Previous>,
) -> GatewayLoad {
    let mut load = GatewayLoad::default();
    load.connections.unready = unready;
    let mut deltas = vec![];
    let mut next = HashMap::new();
    for (name, m) in scrapes {
        let Some(m) = m else {
            load.connections.missing += 1;
            continue;
        };
        match m.connections {
            Some(c) => load.connections.values.push(c),
            None => load.connections.missing += 1,
        }
        if let Some(b) = &m.latency {
            let before = prev.get(name).and_then(|p| p.latency.as_ref());
            deltas.push(calc::delta(b, before));
        }
        next.insert(
            name.clone(),
            Previous {
                latency: m.latency.clone(),
                settled: None,
            },
        );
    }
    load.latency = calc::sum(&deltas);
    *prev = next;
    load
}

/// Engine load from this round's scrapes at `now`; updates `prev`.
pub fn engine_load(
    scrapes: &[(String, Option<PodMetrics>)],
    unready: usize,
    now: Instant,
    prev: &mut HashMap<String, Previous>,
) -> EngineLoad {
    let mut rate = PodValues {
        unready,
        ..PodValues::default()
    };
    let mut backlog: Option<f64> = None;
    let mut next = HashMap::new();
    for (name, m) in scrapes {
        let Some(m) = m else {
            rate.missing += 1;
            continue;
        };
        if let Some(b) = m.backlog {
            backlog = Some(backlog.map_or(b, |x: f64| x.max(b)));
        }
        let before = prev.get(name).and_then(|p| p.settled);
        match (m.settled, before) {
            _ if m.settled_rate.is_some() => rate.values.extend(m.settled_rate),
            (Some(now_count), Some((then_count, then))) if now_count >= then_count => {
                let dt = now.saturating_duration_since(then).as_secs_f64();
                if dt > 0.0 {
                    rate.values.push((now_count - then_count) / dt);
                } else {
                    rate.missing += 1;
                }
            }
            // First scrape of this pod, or its counter restarted: no rate yet.
            _ => rate.missing += 1,
        }
        next.insert(
            name.clone(),
            Previous {
                latency: None,
                settled: m.settled.map(|c| (c, now)),
            },
        );
    }
    *prev = next;
    EngineLoad {
        bet_rate: rate,
        backlog,
    }
}

/// Deletion costs for a gateway scale-down: each scraped pod's live connection count, so the
/// ReplicaSet removes the emptiest pods first.
pub fn deletion_costs(scrapes: &[(String, Option<PodMetrics>)]) -> Vec<(String, i32)> {
    scrapes
        .iter()
        .filter_map(|(name, m)| {
            let c = m.as_ref()?.connections?;
            let cost = c.round().clamp(0.0, f64::from(i32::MAX)) as i32;
            Some((name.clone(), cost))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(name: &str, ip: Option<&str>, ready: bool, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: ip.map(Into::into),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn classify_splits_ready_unready_and_skips_terminating() {
        let pods = vec![
            pod("b", Some("127.0.0.3"), true, false),
            pod("a", Some("127.0.0.2"), true, false),
            pod("c", Some("127.0.0.4"), false, false),
            pod("d", None, true, false),
            pod("e", Some("127.0.0.5"), true, true),
        ];
        let t = classify(&pods, 9090);
        assert_eq!(
            t.ready,
            vec![
                ("a".to_string(), "127.0.0.2:9090".parse().unwrap()),
                ("b".to_string(), "127.0.0.3:9090".parse().unwrap())
            ]
        );
        assert_eq!(t.unready, 2);
    }

    fn gw(conns: f64, le250: f64) -> PodMetrics {
        PodMetrics {
            connections: Some(conns),
            latency: Some(vec![(100.0, 0.0), (250.0, le250), (f64::INFINITY, le250)]),
            ..Default::default()
        }
    }

    #[test]
    fn gateway_load_uses_latency_deltas_and_counts_failures_as_missing() {
        let mut prev = HashMap::new();
        let first = vec![
            ("a".to_string(), Some(gw(10.0, 100.0))),
            ("b".to_string(), None),
        ];
        let l = gateway_load(&first, 1, &mut prev);
        assert_eq!(l.connections.values, vec![10.0]);
        assert_eq!((l.connections.missing, l.connections.unready), (1, 1));
        // No previous scrape: cumulative counts.
        assert_eq!(l.latency.as_ref().unwrap()[2].1, 100.0);
        let second = vec![("a".to_string(), Some(gw(20.0, 130.0)))];
        let l = gateway_load(&second, 0, &mut prev);
        assert_eq!(l.latency.unwrap()[2].1, 30.0);
        assert_eq!(deletion_costs(&second), vec![("a".to_string(), 20)]);
    }

    #[test]
    fn engine_rates_need_two_scrapes() {
        let t0 = Instant::now();
        let mut prev = HashMap::new();
        let m = |settled: f64, backlog: f64| PodMetrics {
            settled: Some(settled),
            backlog: Some(backlog),
            ..Default::default()
        };
        let l = engine_load(&[("e1".into(), Some(m(100.0, 5.0)))], 0, t0, &mut prev);
        assert!(l.bet_rate.values.is_empty());
        assert_eq!(l.bet_rate.missing, 1);
        assert_eq!(l.backlog, Some(5.0));
        let l = engine_load(
            &[
                ("e1".into(), Some(m(300.0, 7.0))),
                ("e2".into(), Some(m(1.0, 9.0))),
            ],
            0,
            t0 + Duration::from_secs(2),
            &mut prev,
        );
        assert_eq!(l.bet_rate.values, vec![100.0]);
        assert_eq!(l.bet_rate.missing, 1);
        assert_eq!(l.backlog, Some(9.0));
    }

    #[test]
    fn a_rate_from_the_source_is_used_as_is() {
        let mut prev = HashMap::new();
        let m = PodMetrics {
            settled: Some(100.0),
            settled_rate: Some(42.5),
            ..Default::default()
        };
        let l = engine_load(&[("e1".into(), Some(m))], 0, Instant::now(), &mut prev);
        assert_eq!(l.bet_rate.values, vec![42.5]);
        assert_eq!(l.bet_rate.missing, 0);
    }
}
