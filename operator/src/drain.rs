//! What the drain budget means for pods (the seam the graceful-drain work plugs into).
//!
//! Pure: the pod settings derived from `spec.drain`, and what the status says about gateways that
//! are draining (the scrape itself lives in `drain_probe`).

use k8s_openapi::api::core::v1::Pod;

use crate::crd::{DrainSpec, DrainingStatus};

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

/// The gateway gauge of open player connections (kept up to date while draining).
pub const CONNECTIONS_METRIC: &str = "ws_active_connections";

/// The value of an unlabelled (or summed over labels) gauge in Prometheus text format.
/// `None` when the metric is absent or a sample does not parse.
pub fn parse_gauge(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name 3`, `name{a="b"} 3`; not `name_total 3`.
        let rest = match rest.chars().next() {
            Some(' ') | Some('\t') => rest,
            Some('{') => &rest[rest.find('}')? + 1..],
            _ => continue,
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        total = Some(total.unwrap_or(0.0) + value);
    }
    total
}

/// A gateway pod being deleted, and where its admin port answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainingPod {
    pub name: String,
    pub ip: Option<String>,
}

/// Gateway pods with a deletion timestamp (they are draining until their process exits).
pub fn draining_pods(pods: &[Pod]) -> Vec<DrainingPod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| DrainingPod {
            name: p.metadata.name.clone().unwrap_or_default(),
            ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
        })
        .collect()
}

/// Status from the draining pods' connection counts (`None` for a pod whose metrics could not
/// be read). `None` when nothing is draining.
pub fn summarize(connections: &[Option<i64>]) -> Option<DrainingStatus> {
    if connections.is_empty() {
        return None;
    }
    let known: Vec<i64> = connections.iter().flatten().copied().collect();
    Some(DrainingStatus {
        gateways: i32::try_from(connections.len()).unwrap_or(i32::MAX),
        connections: (!known.is_empty()).then(|| known.iter().sum()),
    })
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

    #[test]
    fn gauge_parsing() {
        let text = "# HELP ws_active_connections Open connections\n# TYPE ws_active_connections gauge\nws_active_connections 42\nws_active_connections_total 7\ngateway_draining 1\n";
        assert_eq!(parse_gauge(text, CONNECTIONS_METRIC), Some(42.0));
        assert_eq!(parse_gauge(text, "gateway_draining"), Some(1.0));
        assert_eq!(parse_gauge(text, "missing"), None);
        let labelled =
            "ws_active_connections{shard=\"0\"} 3\nws_active_connections{shard=\"1\"} 4\n";
        assert_eq!(parse_gauge(labelled, CONNECTIONS_METRIC), Some(7.0));
        assert_eq!(
            parse_gauge("ws_active_connections x\n", CONNECTIONS_METRIC),
            None
        );
        assert_eq!(
            parse_gauge("ws_active_connections 1e3\n", CONNECTIONS_METRIC),
            Some(1000.0)
        );
    }

    #[test]
    fn draining_pods_are_the_terminating_ones() {
        use k8s_openapi::api::core::v1::PodStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
        let pod = |name: &str, deleting: bool, ip: Option<&str>| Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = [
            pod("a", false, Some("127.0.0.2")),
            pod("b", true, Some("127.0.0.3")),
            pod("c", true, None),
        ];
        assert_eq!(
            draining_pods(&pods),
            vec![
                DrainingPod {
                    name: "b".into(),
                    ip: Some("127.0.0.3".into())
                },
                DrainingPod {
                    name: "c".into(),
                    ip: None
                }
            ]
        );
    }

    #[test]
    fn summary_table() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(
            summarize(&[Some(10), Some(5)]),
            Some(DrainingStatus {
                gateways: 2,
                connections: Some(15)
            })
        );
        assert_eq!(
            summarize(&[Some(10), None]),
            Some(DrainingStatus {
                gateways: 2,
                connections: Some(10)
            })
        );
        assert_eq!(
            summarize(&[None]),
            Some(DrainingStatus {
                gateways: 1,
                connections: None
            })
        );
    }
}
