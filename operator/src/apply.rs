//! Apply: server-side apply of the built objects, then deletion of the ones no longer asked for.
//!
//! Which objects changed (for events) is decided by pure functions on what was listed before and
//! what the API server returned.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::build::FIELD_MANAGER;
use crate::error::{is_not_found, Error};

/// What an apply did to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Pure: compares the object before (if it existed) with the one the API returned.
pub fn change<K: Resource>(before: Option<&K>, after: &K) -> Change {
    match before {
        None => Change::Created,
        Some(b) if b.meta().resource_version != after.meta().resource_version => Change::Updated,
        Some(_) => Change::Unchanged,
    }
}

/// Pure: names of existing objects the fleet (uid) controls that are not in `desired`.
pub fn orphans<K: Resource>(
    existing: &BTreeMap<String, K>,
    desired: &[String],
    owner_uid: &str,
) -> Vec<String> {
    existing
        .iter()
        .filter(|(name, _)| !desired.contains(name))
        .filter(|(_, obj)| {
            obj.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner_uid && r.controller == Some(true))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Lists the objects of one kind carrying the fleet's ownership labels, by name.
pub async fn list_owned<K>(
    api: &Api<K>,
    selector: &str,
    kind: &'static str,
) -> Result<BTreeMap<String, K>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(Error::api("list", kind, selector))?;
    Ok(list.items.into_iter().map(|o| (o.name_any(), o)).collect())
}

/// Server-side apply with the operator's field manager; `force` takes over fields another manager
/// set (e.g. someone's `kubectl edit` of replicas), as the operator is the source of truth.
pub async fn apply<K>(api: &Api<K>, obj: &K, kind: &'static str) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(Error::api("apply", kind, name))
}

/// Deletes an object; already gone is fine. Dependents (ReplicaSets, pods) go in the background.
pub async fn delete<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api("delete", kind, name)(e)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn svc(name: &str, rv: &str, owner: Option<(&str, bool)>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                owner_references: owner.map(|(uid, controller)| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(controller),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn change_by_resource_version() {
        let a = svc("a", "1", None);
        assert_eq!(change(None, &a), Change::Created);
        assert_eq!(change(Some(&a), &svc("a", "1", None)), Change::Unchanged);
        assert_eq!(change(Some(&a), &svc("a", "2", None)), Change::Updated);
    }

    #[test]
    fn orphans_are_controlled_and_undesired() {
        let existing = BTreeMap::from([
            ("keep".to_string(), svc("keep", "1", Some(("u1", true)))),
            ("old".to_string(), svc("old", "1", Some(("u1", true)))),
            (
                "other-fleet".to_string(),
                svc("other-fleet", "1", Some(("u2", true))),
            ),
            (
                "not-controller".to_string(),
                svc("not-controller", "1", Some(("u1", false))),
            ),
            ("unowned".to_string(), svc("unowned", "1", None)),
        ]);
        assert_eq!(
            orphans(&existing, &["keep".to_string()], "u1"),
            vec!["old".to_string()]
        );
    }
}
