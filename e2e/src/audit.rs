//! A request log in the spirit of the API server's audit log: which user made which
//! (verb, API group, resource[/subresource], namespace, name) request, as RBAC sees it. Tests use it to check that a
//! client's Role grants exactly what the client uses.
//!
//! The user is the bearer token of the request (kubesim has no authentication; a token names a
//! user, as a static token file would), or `system:anonymous` without one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::{header, HeaderMap, Method};

/// One kind of request, as an RBAC rule would match it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    pub user: String,
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group ("" for the core group).
    pub group: String,
    /// Resource, with `/subresource` when there is one (e.g. `deployments/status`).
    pub resource: String,
    /// Namespace ("" for cluster-scoped requests and requests across all namespaces).
    pub namespace: String,
    /// Object name, as RBAC's `resourceNames` match it ("" for list, watch, create by POST and
    /// collection requests).
    pub name: String,
}

/// Distinct requests seen, with how often each was made (bounded by the number of distinct keys,
/// not by the number of requests).
#[derive(Debug, Default)]
pub struct AuditLog {
    seen: Mutex<BTreeMap<RequestKey, u64>>,
}

impl AuditLog {
    pub fn record(&self, key: RequestKey) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen.entry(key).or_insert(0) += 1;
        }
    }

    /// Every distinct request so far, with its count.
    pub fn entries(&self) -> Vec<(RequestKey, u64)> {
        self.seen
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// The distinct requests of one user.
    pub fn of_user(&self, user: &str) -> Vec<RequestKey> {
        self.entries()
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.user == user)
            .collect()
    }
}

/// The user a request authenticates as: its bearer token, or `system:anonymous`.
pub fn user(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "system:anonymous".into())
}

/// The RBAC attributes of a resource request (`None` for discovery, OpenAPI and health paths),
/// derived as the API server's request-info parser does.
pub fn request_key(user: String, method: &Method, path: &str, watch: bool) -> Option<RequestKey> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (*g, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // `namespaces/<ns>/<resource>...` is namespaced; `namespaces/<ns>[/status|finalize]` is
        // the namespace object itself.
        ["namespaces", ns, res, tail @ ..]
            if !(tail.is_empty() && (*res == "status" || *res == "finalize")) =>
        {
            (ns.to_string(), {
                let mut v = vec![*res];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (String::new(), other.to_vec()),
    };
    let resource = rest.first()?;
    let name = rest.get(1);
    let sub = rest.get(2);
    let verb = match (method.clone(), name.is_some()) {
        (Method::GET, _) if watch => "watch",
        (Method::GET, true) => "get",
        (Method::GET, false) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, true) => "delete",
        (Method::DELETE, false) => "deletecollection",
        _ => return None,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some(RequestKey {
        user,
        verb: verb.into(),
        group: group.into(),
        resource,
        namespace,
        name: name.map(|n| n.to_string()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Attrs = (String, String, String, String, String);

    fn key(method: Method, path: &str, watch: bool) -> Option<Attrs> {
        request_key("u".into(), &method, path, watch)
            .map(|k| (k.verb, k.group, k.resource, k.namespace, k.name))
    }

    /// Attributes (verb, group, resource, namespace, name).
    fn t(v: &str, g: &str, r: &str, ns: &str, name: &str) -> Option<Attrs> {
        Some((v.into(), g.into(), r.into(), ns.into(), name.into()))
    }

    #[test]
    fn request_attributes_table() {
        use Method as M;
        let cases = [
            (M::GET, "/api/v1/pods", false, t("list", "", "pods", "", "")),
            (M::GET, "/api/v1/pods", true, t("watch", "", "pods", "", "")),
            (
                M::GET,
                "/api/v1/namespaces/a/pods/p",
                false,
                t("get", "", "pods", "a", "p"),
            ),
            (
                M::GET,
                "/api/v1/namespaces/a/pods/p/log",
                false,
                t("get", "", "pods/log", "a", "p"),
            ),
            (
                M::POST,
                "/apis/apps/v1/namespaces/a/deployments",
                false,
                t("create", "apps", "deployments", "a", ""),
            ),
            (
                M::PATCH,
                "/apis/gamefleet.dev/v1alpha1/namespaces/a/gamefleets/f/status",
                false,
                t("patch", "gamefleet.dev", "gamefleets/status", "a", "f"),
            ),
            (
                M::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                false,
                t("update", "coordination.k8s.io", "leases", "a", "l"),
            ),
            (
                M::DELETE,
                "/api/v1/namespaces/a/services/s",
                false,
                t("delete", "", "services", "a", "s"),
            ),
            (
                M::DELETE,
                "/api/v1/namespaces/a/services",
                false,
                t("deletecollection", "", "services", "a", ""),
            ),
            (
                M::GET,
                "/api/v1/namespaces/a",
                false,
                t("get", "", "namespaces", "", "a"),
            ),
            (
                M::PUT,
                "/api/v1/namespaces/a/finalize",
                false,
                t("update", "", "namespaces/finalize", "", "a"),
            ),
            (M::GET, "/apis/apps/v1", false, None),
            (M::GET, "/api", false, None),
            (M::GET, "/openapi/v2", false, None),
            (M::GET, "/version", false, None),
        ];
        for (m, path, watch, want) in cases {
            assert_eq!(key(m.clone(), path, watch), want, "{m} {path}");
        }
    }

    #[test]
    fn user_is_the_bearer_token() {
        let mut h = HeaderMap::new();
        assert_eq!(user(&h), "system:anonymous");
        h.insert(header::AUTHORIZATION, "Bearer op-1".parse().unwrap());
        assert_eq!(user(&h), "op-1");
        h.insert(header::AUTHORIZATION, "Basic eDp5".parse().unwrap());
        assert_eq!(user(&h), "system:anonymous");
    }

    #[test]
    fn log_counts_distinct_requests_per_user() {
        let log = AuditLog::default();
        let k = |u: &str, v: &str| RequestKey {
            user: u.into(),
            verb: v.into(),
            group: "".into(),
            resource: "pods".into(),
            namespace: "a".into(),
            name: String::new(),
        };
        log.record(k("a", "get"));
        log.record(k("a", "get"));
        log.record(k("b", "list"));
        assert_eq!(log.entries(), vec![(k("a", "get"), 2), (k("b", "list"), 1)]);
        assert_eq!(log.of_user("b"), vec![k("b", "list")]);
    }
}
