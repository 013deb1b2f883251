//! Service names for pods: the text of a pod's `/etc/hosts` (the host's file
//! plus one line per Service with a cluster IP), the simulated cluster's DNS.

use serde_json::Value;

/// A Service that resolves: it has a cluster IP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: String,
}

/// The Services that get names: headless (`clusterIP: None`) and IP-less ones
/// (not yet assigned, ExternalName) have no address to give.
pub fn resolvable(services: &[Value]) -> Vec<ServiceName> {
    let mut out: Vec<ServiceName> = services
        .iter()
        .filter_map(|s| {
            let ip = s.pointer("/spec/clusterIP").and_then(Value::as_str)?;
            let namespace = s.pointer("/metadata/namespace").and_then(Value::as_str)?;
            let name = s.pointer("/metadata/name").and_then(Value::as_str)?;
            (!ip.is_empty() && ip != "None" && !name.is_empty()).then(|| ServiceName {
                namespace: namespace.to_string(),
                name: name.to_string(),
                cluster_ip: ip.to_string(),
            })
        })
        .collect();
    // Stable text, so an unchanged set is never rewritten.
    out.sort();
    out
}

/// The hosts file of a pod in `pod_namespace`: `base` (the host's `/etc/hosts`)
/// then each Service as `<svc>.<ns>`, `<svc>.<ns>.svc` and
/// `<svc>.<ns>.svc.cluster.local`, and as the bare `<svc>` when it is in the
/// pod's own namespace (as a pod's DNS search path would resolve it).
pub fn hosts_file(base: &str, services: &[ServiceName], pod_namespace: &str) -> String {
    let mut out = base.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !services.is_empty() {
        out.push_str("# Services (kubesim)\n");
    }
    for s in services {
        let (ip, name, ns) = (&s.cluster_ip, &s.name, &s.namespace);
        out.push_str(ip);
        out.push('\t');
        if ns == pod_namespace {
            out.push_str(name);
            out.push(' ');
        }
        out.push_str(&format!(
            "{name}.{ns} {name}.{ns}.svc {name}.{ns}.svc.cluster.local\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: Option<&str>) -> Value {
        let mut s = json!({"metadata": {"namespace": ns, "name": name}, "spec": {"ports": []}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    }

    #[test]
    fn headless_and_ip_less_services_get_no_name() {
        let services = [
            svc("games", "redis", Some("127.1.0.7")),
            svc("games", "ledger-redis", Some("None")),
            svc("games", "pending", None),
            svc("games", "empty", Some("")),
            svc("ledger", "redis", Some("127.1.0.9")),
        ];
        let names: Vec<(String, String)> = resolvable(&services)
            .into_iter()
            .map(|s| (s.namespace, s.name))
            .collect();
        assert_eq!(
            names,
            [
                ("games".to_string(), "redis".to_string()),
                ("ledger".to_string(), "redis".to_string())
            ]
        );
    }

    #[test]
    fn short_names_only_for_the_pods_own_namespace() {
        let services = resolvable(&[
            svc("ledger", "redis", Some("127.1.0.9")),
            svc("games", "redis", Some("127.1.0.7")),
        ]);
        let text = hosts_file("127.0.0.1\tlocalhost", &services, "games");
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n\
             # Services (kubesim)\n\
             127.1.0.7\tredis redis.games redis.games.svc redis.games.svc.cluster.local\n\
             127.1.0.9\tredis.ledger redis.ledger.svc redis.ledger.svc.cluster.local\n"
        );
        let other = hosts_file("", &services, "default");
        assert!(!other
            .lines()
            .any(|l| l.split_whitespace().skip(1).any(|n| n == "redis")));
        assert_eq!(other.lines().count(), 3);
    }

    #[test]
    fn no_services_leaves_the_host_file_as_it_is() {
        let base = "127.0.0.1 localhost\n::1 localhost\n";
        assert_eq!(hosts_file(base, &[], "games"), base);
    }
}
