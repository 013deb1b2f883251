//! Presence without the join storm. Every join and leave still travels the bus as one
//! `player_joined`/`player_left` event (with its room position), but a gateway does not hand
//! each one to every local member of the room: it folds them per room into a [`Summary`] and
//! writes at most one `presence` frame per interval to the room's members. N players joining a
//! room so cost about N frames per interval instead of N².
//!
//! [`Coalescer`] is the pure state machine (time is passed in); the dispatcher owns one and
//! sends what it returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::bus::Position;
use crate::protocol::{RoomPosition, ServerFrame};

/// Names listed per direction in one `presence` frame; the rest are counted in `joinedMore` /
/// `leftMore`.
pub const MAX_NAMES: usize = 20;

/// One join or leave, as the bus delivered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub joined: bool,
    pub user_id: String,
    /// The room's member count right after the change.
    pub player_count: u64,
    /// The event's place in the room's history.
    pub position: Option<Position>,
    /// The connection that made the change (not told of its own change alone).
    pub connection: Option<String>,
}

impl Change {
    /// The change a ready-made `player_joined`/`player_left` frame describes; `None` for any
    /// other frame.
    pub fn of_frame(text: &str, connection: Option<String>) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Event {
            #[serde(rename = "type")]
            kind: String,
            user_id: String,
            player_count: u64,
            #[serde(default)]
            position: Option<Position>,
        }
        let e: Event = serde_json::from_str(text).ok()?;
        let joined = match e.kind.as_str() {
            "player_joined" => true,
            "player_left" => false,
            _ => return None,
        };
        Some(Self {
            joined,
            user_id: e.user_id,
            player_count: e.player_count,
            position: e.position,
            connection,
        })
    }
}

/// What one `presence` frame tells: the changes folded since the room's previous frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The member count after the last folded change.
    pub player_count: u64,
    /// Users who joined, in order, at most [`MAX_NAMES`] (a user can appear more than once:
    /// one entry per connection that joined).
    pub joined: Vec<String>,
    pub left: Vec<String>,
    /// Joins and leaves beyond the listed names.
    pub joined_more: u64,
    pub left_more: u64,
    /// The highest position folded in.
    pub position: Option<Position>,
    /// Changes folded in.
    pub changes: u64,
    /// The connection that made the first change folded in.
    pub first_connection: Option<String>,
}

impl Summary {
    fn add(&mut self, c: Change, max_names: usize) {
        self.changes += 1;
        if self.changes == 1 {
            self.first_connection = c.connection.clone();
        }
        let (names, more) = if c.joined {
            (&mut self.joined, &mut self.joined_more)
        } else {
            (&mut self.left, &mut self.left_more)
        };
        if names.len() < max_names {
            names.push(c.user_id);
        } else {
            *more += 1;
        }
        self.player_count = c.player_count;
        let later = match (&self.position, &c.position) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(p), Some(n)) => n.epoch != p.epoch || n.offset > p.offset,
        };
        if later {
            self.position = c.position;
        }
    }

    /// A connection not to send this summary to: the one whose own change is all it tells
    /// (as with `player_joined`, a joiner is not told of itself).
    pub fn skip_connection(&self) -> Option<&str> {
        if self.changes == 1 {
            self.first_connection.as_deref()
        } else {
            None
        }
    }

    /// The `presence` frame's JSON text for `game_id`.
    pub fn to_frame(&self, game_id: &str) -> String {
        ServerFrame::Presence {
            game_id,
            player_count: self.player_count,
            joined: &self.joined,
            left: &self.left,
            joined_more: self.joined_more,
            left_more: self.left_more,
            position: self.position.as_ref().map(|p| RoomPosition {
                game_id,
                offset: p.offset,
                epoch: &p.epoch,
            }),
        }
        .to_text()
    }
}

#[derive(Debug, Default)]
struct Room {
    pending: Option<Summary>,
    /// When the room's last `presence` frame went out (ms, the caller's clock).
    last_sent_ms: Option<u64>,
}

impl Room {
    fn take(&mut self, now_ms: u64) -> Option<Summary> {
        let s = self.pending.take()?;
        self.last_sent_ms = Some(now_ms);
        Some(s)
    }

    fn may_send(&self, now_ms: u64, interval_ms: u64) -> bool {
        self.last_sent_ms
            .is_none_or(|t| now_ms >= t.saturating_add(interval_ms))
    }
}

/// Per room: the changes not yet told, and when the room was last told.
#[derive(Debug)]
pub struct Coalescer {
    interval_ms: u64,
    max_names: usize,
    rooms: HashMap<String, Room>,
}

impl Coalescer {
    pub fn new(interval: Duration, max_names: usize) -> Self {
        Self {
            interval_ms: interval.as_millis().max(1) as u64,
            max_names,
            rooms: HashMap::new(),
        }
    }

    /// Folds in a change. Returns the summary to send at once when the room has not been told
    /// anything for an interval (a lone join is not delayed); otherwise it waits for [`due`].
    ///
    /// [`due`]: Self::due
    pub fn record(&mut self, game_id: &str, change: Change, now_ms: u64) -> Option<Summary> {
        let room = self.rooms.entry(game_id.to_owned()).or_default();
        room.pending
            .get_or_insert_with(Summary::default)
            .add(change, self.max_names);
        if room.may_send(now_ms, self.interval_ms) {
            return room.take(now_ms);
        }
        None
    }

    /// The room's pending summary, to send before another frame of the room: its members then
    /// see the room's positions in order.
    pub fn take(&mut self, game_id: &str, now_ms: u64) -> Option<Summary> {
        self.rooms.get_mut(game_id)?.take(now_ms)
    }

    /// Every summary whose room may be told again; forgets rooms quiet for an interval.
    pub fn due(&mut self, now_ms: u64) -> Vec<(String, Summary)> {
        let interval_ms = self.interval_ms;
        let mut out = Vec::new();
        self.rooms.retain(|game_id, room| {
            if room.may_send(now_ms, interval_ms) {
                match room.take(now_ms) {
                    Some(s) => out.push((game_id.clone(), s)),
                    // Quiet for a whole interval: the next change is sent at once anyway.
                    None => return false,
                }
            }
            true
        });
        out
    }

    /// Rooms with changes waiting (diagnostics and tests).
    pub fn pending(&self) -> usize {
        self.rooms.values().filter(|r| r.pending.is_some()).count()
    }
}

/// A room's replayed history as live members saw it: each run of joins and leaves becomes one
/// `presence` frame (at the run's last position), every other frame stays as it is.
pub fn fold_replay(game_id: &str, frames: Vec<Arc<str>>, max_names: usize) -> Vec<Arc<str>> {
    let mut out = Vec::with_capacity(frames.len());
    let mut run: Option<Summary> = None;
    for frame in frames {
        match Change::of_frame(&frame, None) {
            Some(change) => run
                .get_or_insert_with(Summary::default)
                .add(change, max_names),
            None => {
                if let Some(s) = run.take() {
                    out.push(Arc::from(s.to_frame(game_id)));
                }
                out.push(frame);
            }
        }
    }
    if let Some(s) = run {
        out.push(Arc::from(s.to_frame(game_id)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn change(joined: bool, user: &str, count: u64, offset: u64) -> Change {
        Change {
            joined,
            user_id: user.into(),
            player_count: count,
            position: Some(Position {
                offset,
                epoch: "e".into(),
            }),
            connection: Some(format!("conn-{user}")),
        }
    }

    fn coalescer() -> Coalescer {
        Coalescer::new(Duration::from_millis(250), 3)
    }

    #[test]
    fn a_lone_change_is_sent_at_once_then_a_burst_waits_for_the_interval() {
        let mut c = coalescer();
        let first = c.record("g", change(true, "a", 1, 1), 1_000).unwrap();
        assert_eq!(first.joined, ["a"]);
        assert_eq!(
            first.skip_connection(),
            Some("conn-a"),
            "not told of itself"
        );
        for (i, user) in ["b", "c", "d", "e", "f"].iter().enumerate() {
            let at = 1_010 + i as u64 * 10;
            assert_eq!(
                c.record("g", change(true, user, 2 + i as u64, 2 + i as u64), at),
                None
            );
        }
        assert_eq!(c.pending(), 1);
        assert!(c.due(1_249).is_empty(), "not before an interval has passed");
        let sent = c.due(1_250);
        assert_eq!(sent.len(), 1);
        let (room, s) = &sent[0];
        assert_eq!(room, "g");
        assert_eq!(s.player_count, 6);
        assert_eq!(s.joined, ["b", "c", "d"], "bounded list, in order");
        assert_eq!(s.joined_more, 2);
        assert_eq!(s.position.as_ref().map(|p| p.offset), Some(6));
        assert_eq!(
            s.skip_connection(),
            None,
            "every member hears of the others"
        );
        assert!(c.due(1_300).is_empty(), "nothing pending");
        assert_eq!(
            c.record("g", change(true, "g", 7, 7), 1_400),
            None,
            "too soon"
        );
        assert_eq!(c.due(1_500).len(), 1);
    }

    #[test]
    fn leaves_are_counted_apart_from_joins() {
        let mut c = coalescer();
        c.record("g", change(true, "a", 1, 1), 0);
        c.record("g", change(true, "b", 2, 2), 10);
        c.record("g", change(false, "a", 1, 3), 20);
        for i in 0..4 {
            c.record("g", change(false, "x", 0, 4 + i), 30);
        }
        let s = c.due(250).pop().map(|(_, s)| s).unwrap();
        assert_eq!(s.joined, ["b"]);
        assert_eq!((s.left.len(), s.left_more), (3, 2));
        assert_eq!(s.player_count, 0);
    }

    #[test]
    fn rooms_are_coalesced_apart_and_quiet_rooms_are_forgotten() {
        let mut c = coalescer();
        assert!(c.record("a", change(true, "u", 1, 1), 0).is_some());
        assert!(c.record("b", change(true, "u", 1, 1), 0).is_some());
        c.record("a", change(true, "v", 2, 2), 100);
        let sent = c.due(250);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "a");
        // Room b sent nothing in the last interval: forgotten, its next change goes at once.
        assert!(!c.rooms.contains_key("b"));
        assert!(c.record("b", change(true, "w", 2, 2), 260).is_some());
    }

    #[test]
    fn take_sends_early_so_positions_stay_in_order() {
        let mut c = coalescer();
        c.record("g", change(true, "a", 1, 1), 0);
        c.record("g", change(true, "b", 2, 2), 10);
        assert_eq!(c.take("other", 20), None);
        let s = c.take("g", 20).unwrap();
        assert_eq!(s.joined, ["b"]);
        assert_eq!(c.take("g", 30), None);
        // The early frame counts as the room's last one.
        assert_eq!(c.record("g", change(true, "c", 3, 4), 100), None);
        assert!(c.due(269).is_empty());
        assert_eq!(c.due(270).len(), 1);
    }

    #[test]
    fn a_replay_folds_each_run_of_changes_into_one_frame() {
        let change = |kind: &str, user: &str, count: u64, offset: u64| -> Arc<str> {
            Arc::from(format!(
                r#"{{"type":"{kind}","gameId":"g","userId":"{user}","playerCount":{count},"position":{{"gameId":"g","offset":{offset},"epoch":"e"}}}}"#
            ))
        };
        let event: Arc<str> =
            Arc::from(r#"{"type":"game_event","position":{"gameId":"g","offset":3,"epoch":"e"}}"#);
        let frames = vec![
            change("player_joined", "a", 1, 1),
            change("player_joined", "b", 2, 2),
            Arc::clone(&event),
            change("player_left", "a", 1, 4),
        ];
        let folded = fold_replay("g", frames, MAX_NAMES);
        let v: Vec<Value> = folded
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0]["type"], "presence");
        assert_eq!(v[0]["joined"], json!(["a", "b"]));
        assert_eq!(v[0]["playerCount"], 2);
        assert_eq!(v[0]["position"]["offset"], 2);
        assert_eq!(folded[1], event);
        assert_eq!(v[2]["left"], json!(["a"]));
        assert_eq!(v[2]["position"]["offset"], 4);
        assert!(fold_replay("g", Vec::new(), MAX_NAMES).is_empty());
    }

    #[test]
    fn frames_read_and_written() {
        let joined = r#"{"type":"player_joined","gameId":"g","userId":"ann","playerCount":4,"position":{"gameId":"g","offset":9,"epoch":"ep"}}"#;
        assert_eq!(
            Change::of_frame(joined, Some("c1".into())),
            Some(Change {
                joined: true,
                user_id: "ann".into(),
                player_count: 4,
                position: Some(Position {
                    offset: 9,
                    epoch: "ep".into()
                }),
                connection: Some("c1".into()),
            })
        );
        let left = r#"{"type":"player_left","gameId":"g","userId":"bo","playerCount":3}"#;
        assert_eq!(Change::of_frame(left, None).map(|c| c.joined), Some(false));
        assert_eq!(Change::of_frame(r#"{"type":"game_event"}"#, None), None);
        assert_eq!(Change::of_frame("not json", None), None);
        let mut s = Summary::default();
        s.add(Change::of_frame(joined, None).unwrap(), MAX_NAMES);
        s.add(Change::of_frame(left, None).unwrap(), MAX_NAMES);
        let v: Value = serde_json::from_str(&s.to_frame("g")).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","gameId":"g","playerCount":3,"joined":["ann"],"left":["bo"],
                   "joinedMore":0,"leftMore":0,"position":{"gameId":"g","offset":9,"epoch":"ep"}})
        );
    }
}
