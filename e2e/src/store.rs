//! The object store: JSON objects keyed by storage/namespace/name, one global
//! resourceVersion counter, and a bounded history of changes for watches.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub storage: String,
    pub kind: ChangeKind,
    pub object: Value,
    pub old: Option<Value>,
}

/// What a read-modify-write decided to do.
pub enum Write {
    Put(Value),
    Remove,
    Keep,
}

/// Backlog still in history plus a live receiver.
pub type WatchStart = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

type ObjKey = (String, String);

struct Inner {
    objects: HashMap<String, BTreeMap<ObjKey, Value>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
    /// Watches starting before this version get `410 Gone`.
    compacted: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Change>>,
}

/// Returned when a watch asks for history that is no longer kept.
#[derive(Debug)]
pub struct Expired {
    pub oldest: u64,
}

pub fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(16384);
        Self {
            inner: Mutex::new(Inner {
                objects: HashMap::new(),
                rv: 1,
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted: 0,
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (every mutation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(storage)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    /// All objects of a storage (optionally one namespace) and the list's resourceVersion.
    pub fn list(&self, storage: &str, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(storage)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Every stored object of every storage (for garbage collection).
    pub fn all(&self) -> Vec<(String, Value)> {
        let inner = self.lock();
        inner
            .objects
            .iter()
            .flat_map(|(s, m)| m.values().map(move |v| (s.clone(), v.clone())))
            .collect()
    }

    /// Atomic read-modify-write of one object. `f` sees the current object and
    /// decides; the store stamps the new resourceVersion and records the change.
    pub fn mutate<E>(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
        f: impl FnOnce(Option<&Value>) -> Result<Write, E>,
    ) -> Result<Option<Value>, E> {
        let mut inner = self.lock();
        let key = (ns.to_string(), name.to_string());
        let current = inner
            .objects
            .get(storage)
            .and_then(|m| m.get(&key))
            .cloned();
        let decision = f(current.as_ref())?;
        let (kind, mut object) = match decision {
            Write::Keep => return Ok(current),
            Write::Put(obj) => (
                if current.is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                },
                obj,
            ),
            Write::Remove => match current.clone() {
                Some(obj) => (ChangeKind::Deleted, obj),
                None => return Ok(None),
            },
        };
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut object, rv);
        let map = inner.objects.entry(storage.to_string()).or_default();
        if kind == ChangeKind::Deleted {
            map.remove(&key);
        } else {
            map.insert(key, object.clone());
        }
        let change = Arc::new(Change {
            rv,
            storage: storage.to_string(),
            kind,
            object: object.clone(),
            old: current,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > inner.history_cap {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(change);
        Ok(Some(object))
    }

    /// Starts a watch: changes after `from` still in history, plus a live receiver.
    pub fn watch_from(&self, from: u64) -> Result<WatchStart, Expired> {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        if from < inner.compacted {
            return Err(Expired {
                oldest: inner.compacted,
            });
        }
        let backlog = inner
            .history
            .iter()
            .filter(|c| c.rv > from)
            .cloned()
            .collect();
        Ok((backlog, rx))
    }

    /// Current objects of a storage plus a receiver for every later change.
    pub fn snapshot_and_subscribe(
        &self,
        storage: &str,
        ns: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<Change>>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let items = inner
            .objects
            .get(storage)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv, rx)
    }

    /// Live receiver only (controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}
