//! Frames written by the gateway, and the codes they carry.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bus::Position;

/// How one stream (a room, or the user's inbox) came through a `resume`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamResume {
    /// Every frame missed since the client's position was replayed (just before `resumed`).
    /// False: the gap could not be filled; continue from `position` with fresh state.
    pub recovered: bool,
    /// Frames replayed.
    pub replayed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Room member count after rejoining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub players: Option<u64>,
    /// Why the room could not be rejoined (it was not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
}

/// `{"type":"error","code":…}` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Not JSON, not an object, no string `type`, a binary frame, or a field of the wrong shape.
    InvalidPayload,
    /// `type` is a string the server does not know.
    UnknownMessageType,
    /// The message needs `authenticate` first.
    NotAuthenticated,
    /// `authenticate` on an already authenticated connection.
    AlreadyAuthenticated,
    /// `leave_game` for a room this connection is not in.
    NotInRoom,
    /// The room is at capacity.
    RoomFull,
    /// The fleet runs as many rooms as it may; joining a room without members is refused.
    RoomLimit,
    /// This connection is already in the maximum number of rooms.
    TooManyRooms,
    /// More messages per second than allowed; the message was dropped.
    RateLimited,
    /// `gameId` missing, empty, too long or not a string.
    InvalidGameId,
    /// `place_bet` without a usable `idempotencyKey` (so no `bet_rejected` can name it).
    InvalidIdempotencyKey,
    /// The bus/engines cannot be reached right now; retry later.
    EngineUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            Self::NotAuthenticated => "NOT_AUTHENTICATED",
            Self::AlreadyAuthenticated => "ALREADY_AUTHENTICATED",
            Self::NotInRoom => "NOT_IN_ROOM",
            Self::RoomFull => "ROOM_FULL",
            Self::RoomLimit => "ROOM_LIMIT",
            Self::TooManyRooms => "TOO_MANY_ROOMS",
            Self::RateLimited => "RATE_LIMITED",
            Self::InvalidGameId => "INVALID_GAME_ID",
            Self::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Self::EngineUnavailable => "ENGINE_UNAVAILABLE",
        }
    }
}

/// Every `bet_rejected` reason, whether the gateway decides it (at once) or the engine (after
/// the acknowledgement); the engine stores it with the bet record as [`Self::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BetRejectReason {
    /// `amount` is not a positive integer (minor units) that fits in 64 bits, or its win would
    /// not fit.
    InvalidAmount,
    /// `selection` is not a JSON object, is over `MAX_SELECTION_BYTES` of JSON, or (engine)
    /// breaks the game's rules.
    InvalidSelection,
    /// `clientSeed` breaks [`super::check_client_seed`].
    InvalidClientSeed,
    /// `gameId` missing, empty, too long or not a string.
    InvalidGameId,
    /// The connection has not joined `gameId`.
    NotInRoom,
    /// The bet could not be queued for an engine; it was not accepted.
    EngineUnavailable,
    /// More bets per second than the player may place (counted across gateways).
    RateLimited,
    /// Engine: the player's balance does not cover the amount.
    InsufficientBalance,
    /// Engine: the round stopped taking bets before this one reached it.
    RoundClosed,
    /// Engine: the round holds as many bets as it may.
    RoundFull,
}

impl BetRejectReason {
    pub const ALL: [Self; 10] = [
        Self::InvalidAmount,
        Self::InvalidSelection,
        Self::InvalidClientSeed,
        Self::InvalidGameId,
        Self::NotInRoom,
        Self::EngineUnavailable,
        Self::RateLimited,
        Self::InsufficientBalance,
        Self::RoundClosed,
        Self::RoundFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidAmount => "INVALID_AMOUNT",
            Self::InvalidSelection => "INVALID_SELECTION",
            Self::InvalidClientSeed => "INVALID_CLIENT_SEED",
            Self::InvalidGameId => "INVALID_GAME_ID",
            Self::NotInRoom => "NOT_IN_ROOM",
            Self::EngineUnavailable => "ENGINE_UNAVAILABLE",
            Self::RateLimited => "RATE_LIMITED",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::RoundClosed => "ROUND_CLOSED",
            Self::RoundFull => "ROUND_FULL",
        }
    }
}

/// Every `auth_failed` reason. A refused token is `INVALID_TOKEN` whatever check it failed
/// (clients are not told which).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthFailReason {
    /// No valid JWT (`authenticate`), or neither a usable resume token nor a valid JWT
    /// (`resume`); the connection is closed with 4001.
    InvalidToken,
    /// The user has `--connections-per-user` authenticated connections on this gateway
    /// already; the connection is closed with 4029.
    TooManyConnections,
}

impl AuthFailReason {
    pub const ALL: [Self; 2] = [Self::InvalidToken, Self::TooManyConnections];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidToken => "INVALID_TOKEN",
            Self::TooManyConnections => "TOO_MANY_CONNECTIONS",
        }
    }
}

/// A room frame's `position` (see docs/protocol.md, "Positions").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomPosition<'a> {
    pub game_id: &'a str,
    pub offset: u64,
    pub epoch: &'a str,
}

/// A frame the gateway writes itself.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerFrame<'a> {
    Connected {
        connection_id: &'a str,
        server_time: u64,
    },
    Authenticated {
        user_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<&'a str>,
        /// The user's inbox position now (for a later `resume`).
        #[serde(skip_serializing_if = "Option::is_none")]
        inbox: Option<&'a Position>,
    },
    /// The answer to `resume`, after the replayed frames.
    Resumed {
        user_id: &'a str,
        resume_token: &'a str,
        rooms: BTreeMap<&'a str, StreamResume>,
        inbox: StreamResume,
    },
    /// The gateway is draining: expect a close (1012) in about `reconnect_after_ms`, then
    /// reconnect and resume with `resume_token`.
    ServerDraining {
        reconnect_after_ms: u64,
        resume_token: Option<&'a str>,
    },
    AuthFailed {
        reason: AuthFailReason,
    },
    GameJoined {
        game_id: &'a str,
        players: u64,
        /// The room's event position now (for a later `resume`).
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<&'a Position>,
    },
    GameLeft {
        game_id: &'a str,
        players: u64,
    },
    PlayerJoined {
        game_id: &'a str,
        user_id: &'a str,
        player_count: u64,
    },
    PlayerLeft {
        game_id: &'a str,
        user_id: &'a str,
        player_count: u64,
    },
    /// The room's joins and leaves since its previous `presence` frame (at most one per
    /// interval per room), with bounded name lists.
    Presence {
        game_id: &'a str,
        player_count: u64,
        joined: &'a [String],
        left: &'a [String],
        joined_more: u64,
        left_more: u64,
        /// The position of the last change folded in.
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<RoomPosition<'a>>,
    },
    BetAcknowledged {
        idempotency_key: &'a str,
        status: &'a str,
    },
    BetRejected {
        idempotency_key: &'a str,
        reason: BetRejectReason,
        message: &'a str,
    },
    Pong {
        server_time: u64,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
    SystemAnnouncement {
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The JSON text of the frame.
    pub fn to_text(&self) -> String {
        // Serialising plain strings and integers into a String cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }

    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Connected { .. } => FrameKind::Connected,
            Self::Authenticated { .. } => FrameKind::Authenticated,
            Self::Resumed { .. } => FrameKind::Resumed,
            Self::ServerDraining { .. } => FrameKind::ServerDraining,
            Self::AuthFailed { .. } => FrameKind::AuthFailed,
            Self::GameJoined { .. } => FrameKind::GameJoined,
            Self::GameLeft { .. } => FrameKind::GameLeft,
            Self::PlayerJoined { .. } => FrameKind::PlayerJoined,
            Self::PlayerLeft { .. } => FrameKind::PlayerLeft,
            Self::Presence { .. } => FrameKind::Presence,
            Self::BetAcknowledged { .. } => FrameKind::BetAcknowledged,
            Self::BetRejected { .. } => FrameKind::BetRejected,
            Self::Pong { .. } => FrameKind::Pong,
            Self::Error { .. } => FrameKind::Error,
            Self::SystemAnnouncement { .. } => FrameKind::SystemAnnouncement,
        }
    }
}

/// Frame types as metric labels (a closed set, so label cardinality stays bounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Connected,
    Authenticated,
    AuthFailed,
    GameJoined,
    GameLeft,
    PlayerJoined,
    PlayerLeft,
    BetAcknowledged,
    BetRejected,
    BetSettled,
    GameEvent,
    Pong,
    Error,
    SystemAnnouncement,
    ServerDraining,
    Resumed,
    Presence,
    Other,
}

impl FrameKind {
    pub const ALL: [FrameKind; 18] = [
        Self::Connected,
        Self::Authenticated,
        Self::AuthFailed,
        Self::GameJoined,
        Self::GameLeft,
        Self::PlayerJoined,
        Self::PlayerLeft,
        Self::BetAcknowledged,
        Self::BetRejected,
        Self::BetSettled,
        Self::GameEvent,
        Self::Pong,
        Self::Error,
        Self::SystemAnnouncement,
        Self::ServerDraining,
        Self::Resumed,
        Self::Presence,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Authenticated => "authenticated",
            Self::AuthFailed => "auth_failed",
            Self::GameJoined => "game_joined",
            Self::GameLeft => "game_left",
            Self::PlayerJoined => "player_joined",
            Self::PlayerLeft => "player_left",
            Self::BetAcknowledged => "bet_acknowledged",
            Self::BetRejected => "bet_rejected",
            Self::BetSettled => "bet_settled",
            Self::GameEvent => "game_event",
            Self::Pong => "pong",
            Self::Error => "error",
            Self::SystemAnnouncement => "system_announcement",
            Self::ServerDraining => "server_draining",
            Self::Resumed => "resumed",
            Self::Presence => "presence",
            Self::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of a ready-made frame (from an engine), read from its `type` field.
    pub fn of_frame(text: &str) -> FrameKind {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        let Ok(Head { kind: Some(kind) }) = serde_json::from_str::<Head>(text) else {
            return FrameKind::Other;
        };
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == kind.as_ref())
            .unwrap_or(FrameKind::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(f: ServerFrame) -> Value {
        serde_json::from_str(&f.to_text()).unwrap()
    }

    /// Each code serialises as its name and docs/protocol.md names it.
    fn assert_documented<T: Serialize>(codes: impl IntoIterator<Item = (T, &'static str)>) {
        let doc = include_str!("../../../docs/protocol.md");
        for (code, name) in codes {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/protocol.md does not name {name}"
            );
        }
    }

    #[test]
    fn every_bet_reject_reason_is_documented_and_serialises_as_its_name() {
        assert_documented(BetRejectReason::ALL.map(|r| (r, r.as_str())));
    }

    #[test]
    fn every_auth_fail_reason_is_documented_and_serialises_as_its_name() {
        assert_documented(AuthFailReason::ALL.map(|r| (r, r.as_str())));
    }

    #[test]
    fn frames_use_the_reference_field_names() {
        let cases = [
            (
                ServerFrame::Connected {
                    connection_id: "c",
                    server_time: 5,
                },
                json!({"type":"connected","connectionId":"c","serverTime":5}),
            ),
            (
                ServerFrame::Authenticated {
                    user_id: "u",
                    resume_token: None,
                    inbox: None,
                },
                json!({"type":"authenticated","userId":"u"}),
            ),
            (
                ServerFrame::Authenticated {
                    user_id: "u",
                    resume_token: Some("r"),
                    inbox: None,
                },
                json!({"type":"authenticated","userId":"u","resumeToken":"r"}),
            ),
            (
                ServerFrame::ServerDraining {
                    reconnect_after_ms: 250,
                    resume_token: Some("r"),
                },
                json!({"type":"server_draining","reconnectAfterMs":250,"resumeToken":"r"}),
            ),
            (
                ServerFrame::AuthFailed {
                    reason: AuthFailReason::InvalidToken,
                },
                json!({"type":"auth_failed","reason":"INVALID_TOKEN"}),
            ),
            (
                ServerFrame::GameJoined {
                    game_id: "g",
                    players: 2,
                    position: None,
                },
                json!({"type":"game_joined","gameId":"g","players":2}),
            ),
            (
                ServerFrame::PlayerJoined {
                    game_id: "g",
                    user_id: "u",
                    player_count: 2,
                },
                json!({"type":"player_joined","gameId":"g","userId":"u","playerCount":2}),
            ),
            (
                ServerFrame::BetAcknowledged {
                    idempotency_key: "k",
                    status: "processing",
                },
                json!({"type":"bet_acknowledged","idempotencyKey":"k","status":"processing"}),
            ),
            (
                ServerFrame::BetRejected {
                    idempotency_key: "k",
                    reason: BetRejectReason::InvalidAmount,
                    message: "m",
                },
                json!({"type":"bet_rejected","idempotencyKey":"k","reason":"INVALID_AMOUNT","message":"m"}),
            ),
            (
                ServerFrame::Error {
                    code: ErrorCode::RoomFull,
                    message: "m",
                },
                json!({"type":"error","code":"ROOM_FULL","message":"m"}),
            ),
            (
                ServerFrame::Pong { server_time: 1 },
                json!({"type":"pong","serverTime":1}),
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(parsed(frame), want);
        }
    }

    #[test]
    fn as_str_matches_serialisation() {
        for code in [
            ErrorCode::InvalidPayload,
            ErrorCode::TooManyRooms,
            ErrorCode::EngineUnavailable,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
        for r in [BetRejectReason::InvalidAmount, BetRejectReason::NotInRoom] {
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        }
    }

    #[test]
    fn frame_kind_reads_the_type_field() {
        let cases = [
            (r#"{"type":"game_event","event":"x"}"#, FrameKind::GameEvent),
            (
                r#"{"event":"x","type":"bet_settled"}"#,
                FrameKind::BetSettled,
            ),
            (r#"{"type":"something_new"}"#, FrameKind::Other),
            (r#"{"type":7}"#, FrameKind::Other),
            ("not json", FrameKind::Other),
        ];
        for (text, want) in cases {
            assert_eq!(FrameKind::of_frame(text), want, "{text}");
        }
        for (i, k) in FrameKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
