//! Reconcile errors. Spec problems (the user must change something) are kept apart from API
//! failures (retried with backoff): the former become a `Degraded` condition and a Warning event
//! and wait for a change; neither ever crashes the operator.

use crate::validate::InvalidSpec;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GameFleet has no name, namespace or uid yet")]
    MissingIdentity,

    #[error("{0}")]
    InvalidSpec(#[from] InvalidSpec),

    #[error("spec.{field}: Secret {namespace}/{name} not found")]
    SecretNotFound {
        field: &'static str,
        namespace: String,
        name: String,
    },

    #[error("spec.{field}: Secret {namespace}/{name} has no key {key:?}")]
    SecretKeyMissing {
        field: &'static str,
        namespace: String,
        name: String,
        key: String,
    },

    #[error("cannot {action} {kind} {name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// CamelCase reason for conditions, events and the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::MissingIdentity => "MissingIdentity",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SecretNotFound { .. } => "SecretNotFound",
            Error::SecretKeyMissing { .. } => "SecretKeyMissing",
            Error::Api { .. } => "ApiError",
        }
    }

    /// True when retrying cannot help until the user changes the fleet or its Secrets.
    pub fn is_spec_problem(&self) -> bool {
        !matches!(self, Error::Api { .. })
    }

    pub fn api(
        action: &'static str,
        kind: &'static str,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let name = name.into();
        move |source| Error::Api {
            action,
            kind,
            name,
            source,
        }
    }
}

/// True when the API answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// True when the API answered 409 (conflict / already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FieldProblem;

    #[test]
    fn reasons_and_classes() {
        let invalid = Error::InvalidSpec(InvalidSpec {
            problems: vec![FieldProblem {
                field: "gateway.connectionsPerPod".into(),
                message: "must be > 0, got 0".into(),
            }],
        });
        assert_eq!(invalid.reason(), "InvalidSpec");
        assert!(invalid.is_spec_problem());
        assert_eq!(
            invalid.to_string(),
            "spec.gateway.connectionsPerPod: must be > 0, got 0"
        );
        let missing = Error::SecretKeyMissing {
            field: "auth.jwtSecretRef",
            namespace: "games".into(),
            name: "dice-secrets".into(),
            key: "jwt-secret".into(),
        };
        assert_eq!(missing.reason(), "SecretKeyMissing");
        assert_eq!(
            missing.to_string(),
            "spec.auth.jwtSecretRef: Secret games/dice-secrets has no key \"jwt-secret\""
        );
        let status = kube::core::Status::failure("boom", "InternalError").with_code(500);
        let api =
            Error::api("apply", "Deployment", "dice-gateway")(kube::Error::Api(Box::new(status)));
        assert_eq!(api.reason(), "ApiError");
        assert!(!api.is_spec_problem());
        assert!(api
            .to_string()
            .starts_with("cannot apply Deployment dice-gateway: "));
    }
}
