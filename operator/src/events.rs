//! Event publishing: kube-runtime's recorder, with repeats counted per distinct message.
//!
//! kube-runtime's `Recorder` folds events with the same type, reason, action and object into one
//! series and keeps the *first* note: "Created Service dice-players" would then be reported as
//! another occurrence of "Created Deployment dice-gateway", and a new validation problem as the
//! old one. client-go keys its series on the note as well; one recorder (one series cache) per
//! distinct note does the same here.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::Client;

/// Distinct notes remembered; past this, the caches start over (a repeat then creates a new event
/// instead of counting into the old one, which loses nothing).
pub const MAX_SERIES: usize = 512;

pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    by_note: Mutex<HashMap<String, Recorder>>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            by_note: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the event, or counts a repeat of an identical one (same note) into its series.
    pub async fn publish(
        &self,
        ev: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = self.recorder_for(ev.note.as_deref().unwrap_or_default());
        recorder.publish(ev, reference).await
    }

    fn recorder_for(&self, note: &str) -> Recorder {
        let fresh = || Recorder::new(self.client.clone(), self.reporter.clone());
        let Ok(mut map) = self.by_note.lock() else {
            return fresh();
        };
        if map.len() >= MAX_SERIES && !map.contains_key(note) {
            map.clear();
        }
        map.entry(note.to_string()).or_insert_with(fresh).clone()
    }
}
