//! Event history for session resume: every room event and every direct-to-user frame gets a
//! *position* in its stream — an offset (1, 2, 3, … per room or per user) and an epoch (a random
//! name of the stream's current life; it changes when the history is lost or expires, so stale
//! offsets are detected instead of misread). A reconnecting client names the last position it
//! saw and gets what it missed, or learns that the gap cannot be filled.
//!
//! The decisions are pure ([`recover`], [`with_position`]); the buses store the entries (Redis
//! streams, or [`MemoryLog`] in one process).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::Target;

/// Where a frame sits in its stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// Bounds of every stream's history.
#[derive(Clone, Debug)]
pub struct HistoryLimits {
    /// Entries kept per room (approximately, in Redis).
    pub room_entries: usize,
    /// Entries kept per user inbox.
    pub user_entries: usize,
    /// Entries older than this are not replayed; idle streams expire after it.
    pub max_age: Duration,
}

/// Resume covers reconnects (seconds, a minute at worst), not long absences: short windows keep
/// the memory bounded under heavy betting (every settlement is kept for `max_age`).
impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            room_entries: 500,
            user_entries: 50,
            max_age: Duration::from_secs(90),
        }
    }
}

impl HistoryLimits {
    pub fn entries_for(&self, target: &Target) -> usize {
        match target {
            Target::User(_) => self.user_entries,
            _ => self.room_entries,
        }
    }
}

/// One stored frame (already carrying its position).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub offset: u64,
    pub at_ms: u64,
    pub frame: Arc<str>,
}

/// The answer to "what did I miss since `since`?".
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// True when `frames` is exactly what came after `since`; false when the gap cannot be
    /// filled (unknown position, other epoch, trimmed or too old): start afresh from `position`.
    pub recovered: bool,
    /// The stream's latest position.
    pub position: Position,
    /// Missed frames in order (empty unless `recovered`).
    pub frames: Vec<Arc<str>>,
}

/// Decides a recovery from the stream's current position and the entries stored after
/// `since` (in order, at most `limit + 1` of them).
pub fn recover(
    since: Option<&Position>,
    current: Position,
    after: Vec<Entry>,
    now_ms: u64,
    max_age: Duration,
    limit: usize,
) -> Recovery {
    let lost = |position| Recovery {
        recovered: false,
        position,
        frames: Vec::new(),
    };
    let Some(since) = since else {
        return lost(current);
    };
    if since.epoch != current.epoch || since.offset > current.offset {
        return lost(current);
    }
    let missing = current.offset - since.offset;
    if missing > limit as u64 || after.len() as u64 != missing {
        return lost(current);
    }
    let contiguous = after
        .iter()
        .enumerate()
        .all(|(i, e)| e.offset == since.offset + 1 + i as u64);
    let oldest_allowed = now_ms.saturating_sub(max_age.as_millis() as u64);
    if !contiguous || after.first().is_some_and(|e| e.at_ms < oldest_allowed) {
        return lost(current);
    }
    Recovery {
        recovered: true,
        position: current,
        frames: after.into_iter().map(|e| e.frame).collect(),
    }
}

/// `frame` (a JSON object) with `"position":{"gameId"|"userId":…,"offset":…,"epoch":…}` added
/// as its last field. Text that is not an object is returned unchanged.
pub fn with_position(frame: &str, target: &Target, offset: u64, epoch: &str) -> String {
    let trimmed = frame.trim_end();
    let Some(body) = trimmed.strip_suffix('}') else {
        return frame.to_owned();
    };
    let (key, id) = match target {
        Target::Room(g) => ("gameId", g.as_str()),
        Target::User(u) => ("userId", u.as_str()),
        Target::All => return frame.to_owned(),
    };
    let id = serde_json::Value::String(id.to_owned());
    let epoch = serde_json::Value::String(epoch.to_owned());
    let sep = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!("{body}{sep}\"position\":{{\"{key}\":{id},\"offset\":{offset},\"epoch\":{epoch}}}}}")
}

/// The position carried by a frame made by [`with_position`]: (`gameId` or `userId`, stream
/// id, offset). `None` for frames without one.
pub fn position_of(frame: &str) -> Option<(bool, String, u64)> {
    #[derive(Deserialize)]
    struct Head {
        position: Option<Pos>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pos {
        game_id: Option<String>,
        user_id: Option<String>,
        offset: u64,
    }
    let p = serde_json::from_str::<Head>(frame).ok()?.position?;
    match (p.game_id, p.user_id) {
        (Some(g), _) => Some((true, g, p.offset)),
        (None, Some(u)) => Some((false, u, p.offset)),
        _ => None,
    }
}

/// A fresh random epoch name.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// One stream's history in memory (local mode), bounded by count and age.
#[derive(Debug)]
pub struct MemoryLog {
    epoch: String,
    offset: u64,
    entries: VecDeque<Entry>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    pub fn new() -> Self {
        Self {
            epoch: new_epoch(),
            offset: 0,
            entries: VecDeque::new(),
        }
    }

    pub fn position(&self) -> Position {
        Position {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }

    /// Stores `frame` under the next offset; returns the frame with its position added.
    pub fn append(
        &mut self,
        target: &Target,
        frame: &str,
        at_ms: u64,
        max_entries: usize,
        max_age: Duration,
    ) -> Arc<str> {
        self.offset += 1;
        let framed: Arc<str> = Arc::from(with_position(frame, target, self.offset, &self.epoch));
        self.entries.push_back(Entry {
            offset: self.offset,
            at_ms,
            frame: Arc::clone(&framed),
        });
        let oldest_allowed = at_ms.saturating_sub(max_age.as_millis() as u64);
        while self.entries.len() > max_entries
            || self
                .entries
                .front()
                .is_some_and(|e| e.at_ms < oldest_allowed)
        {
            self.entries.pop_front();
        }
        framed
    }

    /// Whether every entry is older than `max_age` (the log can be dropped).
    pub fn is_stale(&self, now_ms: u64, max_age: Duration) -> bool {
        let oldest_allowed = now_ms.saturating_sub(max_age.as_millis() as u64);
        self.entries.back().is_none_or(|e| e.at_ms < oldest_allowed)
    }

    pub fn since(
        &self,
        since: Option<&Position>,
        now_ms: u64,
        max_age: Duration,
        limit: usize,
    ) -> Recovery {
        let after = match since {
            Some(s) => self
                .entries
                .iter()
                .filter(|e| e.offset > s.offset)
                .take(limit + 1)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        recover(since, self.position(), after, now_ms, max_age, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pos(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, at_ms: u64) -> Vec<Entry> {
        range
            .map(|o| Entry {
                offset: o,
                at_ms,
                frame: Arc::from(format!("f{o}")),
            })
            .collect()
    }

    /// (since, current offset, entries after since, limit, recovered, frames replayed)
    type Case = (Option<Position>, u64, Vec<Entry>, usize, bool, usize);

    #[test]
    fn recovery_table() {
        let age = Duration::from_secs(60);
        let now = 100_000;
        let cases: Vec<Case> = vec![
            (None, 5, vec![], 10, false, 0),
            (Some(pos(5, "e")), 5, vec![], 10, true, 0),
            (Some(pos(2, "e")), 5, entries(3..=5, now), 10, true, 3),
            (Some(pos(0, "e")), 2, entries(1..=2, now), 10, true, 2),
            // Another epoch: the history was lost or reset.
            (Some(pos(2, "old")), 5, entries(3..=5, now), 10, false, 0),
            // Ahead of the stream (cannot happen with one epoch; never trusted).
            (Some(pos(9, "e")), 5, vec![], 10, false, 0),
            // Trimmed: the first missed entry is gone.
            (Some(pos(2, "e")), 5, entries(4..=5, now), 10, false, 0),
            // A hole in the middle.
            (
                Some(pos(2, "e")),
                5,
                [entries(3..=3, now), entries(5..=5, now)].concat(),
                10,
                false,
                0,
            ),
            // More missed than may be replayed.
            (Some(pos(2, "e")), 50, entries(3..=14, now), 10, false, 0),
            // Too old.
            (
                Some(pos(2, "e")),
                5,
                entries(3..=5, now - 61_000),
                10,
                false,
                0,
            ),
        ];
        for (i, (since, cur, after, limit, ok, n)) in cases.into_iter().enumerate() {
            let r = recover(since.as_ref(), pos(cur, "e"), after, now, age, limit);
            assert_eq!(r.recovered, ok, "case {i}");
            assert_eq!(r.frames.len(), n, "case {i}");
            assert_eq!(r.position, pos(cur, "e"), "case {i}");
        }
        let r = recover(
            Some(&pos(2, "e")),
            pos(4, "e"),
            entries(3..=4, now),
            now,
            age,
            10,
        );
        assert_eq!(r.frames, vec![Arc::from("f3"), Arc::from("f4")]);
    }

    #[test]
    fn positions_are_added_to_frames_and_read_back() {
        let room = Target::Room("g\"1".into());
        let f = with_position(r#"{"type":"game_event","data":{"a":1}}"#, &room, 7, "ep");
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(
            v["position"],
            json!({"gameId":"g\"1","offset":7,"epoch":"ep"})
        );
        assert_eq!(v["data"], json!({"a":1}));
        assert_eq!(position_of(&f), Some((true, "g\"1".into(), 7)));
        let user = Target::User("ann".into());
        let f = with_position("{}", &user, 3, "e");
        assert_eq!(
            serde_json::from_str::<Value>(&f).unwrap(),
            json!({"position":{"userId":"ann","offset":3,"epoch":"e"}})
        );
        assert_eq!(position_of(&f), Some((false, "ann".into(), 3)));
        assert_eq!(with_position("not json", &user, 1, "e"), "not json");
        assert_eq!(with_position("{}", &Target::All, 1, "e"), "{}");
        assert_eq!(position_of(r#"{"type":"pong"}"#), None);
    }

    #[test]
    fn memory_log_is_bounded_by_count_and_age() {
        let t = Target::Room("g".into());
        let age = Duration::from_secs(10);
        let mut log = MemoryLog::new();
        let start = log.position();
        assert_eq!(start.offset, 0);
        for i in 0..5 {
            log.append(&t, "{}", 1_000 + i, 3, age);
        }
        assert_eq!(log.position().offset, 5);
        // Only the last 3 are kept: from offset 2 the gap cannot be filled, from 3 it can.
        assert!(
            !log.since(Some(&pos(1, &start.epoch)), 1_010, age, 100)
                .recovered
        );
        let r = log.since(Some(&pos(2, &start.epoch)), 1_010, age, 100);
        assert!(r.recovered);
        assert_eq!(r.frames.len(), 3);
        assert_eq!(position_of(&r.frames[0]), Some((true, "g".into(), 3)));
        // Age: everything expires.
        assert!(
            !log.since(Some(&pos(2, &start.epoch)), 20_000, age, 100)
                .recovered
        );
        assert!(log.is_stale(20_000, age));
        log.append(&t, "{}", 30_000, 3, age);
        assert!(!log.is_stale(30_000, age));
        let r = log.since(Some(&pos(5, &start.epoch)), 30_000, age, 100);
        assert!(r.recovered, "only the fresh entry is needed");
        assert_eq!(r.frames.len(), 1);
    }
}
