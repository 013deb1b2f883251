//! Captured pod output.

use std::collections::HashMap;
use std::sync::Mutex;

/// Captured output per pod (all containers, interleaved, with restarts).
#[derive(Default)]
pub struct LogStore {
    logs: Mutex<HashMap<(String, String), String>>,
}

/// Per-pod log cap; older output is dropped first.
const MAX_LOG: usize = 4 << 20;

impl LogStore {
    pub fn append(&self, ns: &str, pod: &str, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let buf = logs.entry((ns.to_string(), pod.to_string())).or_default();
        buf.push_str(line);
        if !line.ends_with('\n') {
            buf.push('\n');
        }
        if buf.len() > MAX_LOG {
            let cut = buf.len() - MAX_LOG / 2;
            let cut = (cut..buf.len())
                .find(|i| buf.is_char_boundary(*i))
                .unwrap_or(buf.len());
            buf.drain(..cut);
        }
    }

    pub fn get(&self, ns: &str, pod: &str) -> Option<String> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.get(&(ns.to_string(), pod.to_string())).cloned()
    }
}
