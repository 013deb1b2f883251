//! Client frame decoding. Pure: text in, frame or precise rejection out.

use serde_json::{Map, Value};

use super::limits::{
    check_client_seed, MAX_GAME_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_SELECTION_BYTES,
};
use super::server::{BetRejectReason, ErrorCode};
use crate::bus::Position;

/// A well-formed client frame.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientFrame {
    /// `token` may be empty: a missing token fails authentication like a bad one.
    Authenticate {
        token: String,
    },
    JoinGame {
        game_id: String,
    },
    LeaveGame {
        game_id: String,
    },
    PlaceBet(PlaceBet),
    Resume(Resume),
    Ping,
}

/// `{"type":"resume","resumeToken"?,"token"?,"rooms"?:{gameId: position|null},"inbox"?: position}`
/// where a position is `{"offset":<integer ≥ 0>,"epoch":<string>}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Resume {
    /// From `authenticated`/`server_draining`; may be empty when `token` is given.
    pub resume_token: String,
    /// A JWT, as in `authenticate` (optional when the resume token is valid).
    pub token: Option<String>,
    /// Rooms to rejoin, each with the last position the client saw (if any), by gameId.
    pub rooms: Vec<(String, Option<Position>)>,
    /// The last position seen in the user's inbox (direct frames such as `bet_settled`).
    pub inbox: Option<Position>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlaceBet {
    pub game_id: String,
    /// Minor units, > 0.
    pub amount: i64,
    /// A JSON object; its rules belong to the engine.
    pub selection: Value,
    pub idempotency_key: String,
    pub client_seed: Option<String>,
}

/// Why a frame was not accepted, as the reply the client gets.
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// Reply `{"type":"error","code":…,"message":…}`.
    Error {
        code: ErrorCode,
        message: &'static str,
    },
    /// Reply `{"type":"bet_rejected","idempotencyKey":…,"reason":…,"message":…}`.
    BetRejected {
        idempotency_key: String,
        reason: BetRejectReason,
        message: &'static str,
    },
}

fn error(code: ErrorCode, message: &'static str) -> Rejection {
    Rejection::Error { code, message }
}

/// Decode one text frame. `authenticated` decides `NOT_AUTHENTICATED` before any field is
/// looked at, so an anonymous client learns first that it must authenticate.
pub fn decode(text: &str, authenticated: bool) -> Result<ClientFrame, Rejection> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| error(ErrorCode::InvalidPayload, "frame is not valid JSON"))?;
    let Value::Object(body) = value else {
        return Err(error(
            ErrorCode::InvalidPayload,
            "frame must be a JSON object",
        ));
    };
    let Some(Value::String(kind)) = body.get("type") else {
        return Err(error(
            ErrorCode::InvalidPayload,
            "frame must have a string field \"type\"",
        ));
    };
    let needs_auth = match kind.as_str() {
        "authenticate" | "resume" | "ping" => false,
        "join_game" | "leave_game" | "place_bet" => true,
        _ => return Err(error(ErrorCode::UnknownMessageType, "unknown message type")),
    };
    if needs_auth && !authenticated {
        return Err(error(
            ErrorCode::NotAuthenticated,
            "send authenticate first",
        ));
    }
    match kind.as_str() {
        "authenticate" => Ok(ClientFrame::Authenticate {
            token: match body.get("token") {
                Some(Value::String(t)) => t.clone(),
                _ => String::new(),
            },
        }),
        "ping" => Ok(ClientFrame::Ping),
        "resume" => resume(&body).map(ClientFrame::Resume),
        "join_game" => Ok(ClientFrame::JoinGame {
            game_id: game_id(&body).map_err(|m| error(ErrorCode::InvalidGameId, m))?,
        }),
        "leave_game" => Ok(ClientFrame::LeaveGame {
            game_id: game_id(&body).map_err(|m| error(ErrorCode::InvalidGameId, m))?,
        }),
        _ => place_bet(&body).map(ClientFrame::PlaceBet),
    }
}

/// Bytes of `v` as compact JSON.
fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

fn game_id(body: &Map<String, Value>) -> Result<String, &'static str> {
    match body.get("gameId") {
        Some(Value::String(id)) if id.is_empty() => Err("gameId must not be empty"),
        Some(Value::String(id)) if id.chars().count() > MAX_GAME_ID_LEN => {
            Err("gameId is longer than 64 characters")
        }
        Some(Value::String(id)) if id.chars().any(char::is_control) => {
            Err("gameId must not contain control characters")
        }
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err("gameId must be a string"),
        None => Err("gameId is required"),
    }
}

fn place_bet(body: &Map<String, Value>) -> Result<PlaceBet, Rejection> {
    let idempotency_key = match body.get("idempotencyKey") {
        Some(Value::String(k)) if k.is_empty() => {
            return Err(error(
                ErrorCode::InvalidIdempotencyKey,
                "idempotencyKey must not be empty",
            ))
        }
        Some(Value::String(k)) if k.chars().count() > MAX_IDEMPOTENCY_KEY_LEN => {
            return Err(error(
                ErrorCode::InvalidIdempotencyKey,
                "idempotencyKey is longer than 128 characters",
            ))
        }
        Some(Value::String(k)) => k.clone(),
        Some(_) => {
            return Err(error(
                ErrorCode::InvalidIdempotencyKey,
                "idempotencyKey must be a string",
            ))
        }
        None => {
            return Err(error(
                ErrorCode::InvalidIdempotencyKey,
                "idempotencyKey is required",
            ))
        }
    };
    let reject = |reason, message| Rejection::BetRejected {
        idempotency_key: idempotency_key.clone(),
        reason,
        message,
    };
    let game_id = game_id(body).map_err(|m| reject(BetRejectReason::InvalidGameId, m))?;
    let amount =
        amount(body.get("amount")).map_err(|m| reject(BetRejectReason::InvalidAmount, m))?;
    let selection = match body.get("selection") {
        Some(s @ Value::Object(_)) if json_len(s) > MAX_SELECTION_BYTES => {
            return Err(reject(
                BetRejectReason::InvalidSelection,
                "selection must be at most 256 bytes of JSON",
            ))
        }
        Some(s @ Value::Object(_)) => s.clone(),
        Some(_) => {
            return Err(reject(
                BetRejectReason::InvalidSelection,
                "selection must be an object",
            ))
        }
        None => {
            return Err(reject(
                BetRejectReason::InvalidSelection,
                "selection is required",
            ))
        }
    };
    let client_seed = match body.get("clientSeed") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match check_client_seed(s) {
            Ok(()) => Some(s.clone()),
            Err(m) => return Err(reject(BetRejectReason::InvalidClientSeed, m)),
        },
        Some(_) => {
            return Err(reject(
                BetRejectReason::InvalidClientSeed,
                "clientSeed must be a string",
            ))
        }
    };
    Ok(PlaceBet {
        game_id,
        amount,
        selection,
        idempotency_key,
        client_seed,
    })
}

/// Most rooms one `resume` may name (the per-connection room limit applies on top).
const MAX_RESUME_ROOMS: usize = 64;

fn resume(body: &Map<String, Value>) -> Result<Resume, Rejection> {
    let invalid = |m| error(ErrorCode::InvalidPayload, m);
    let text = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    };
    let resume_token = text("resumeToken")
        .map_err(|_| invalid("resumeToken must be a string"))?
        .unwrap_or_default();
    let token = text("token").map_err(|_| invalid("token must be a string"))?;
    if resume_token.is_empty() && token.as_deref().is_none_or(str::is_empty) {
        return Err(invalid("resume needs a resumeToken or a token"));
    }
    let rooms = match body.get("rooms") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(rooms)) if rooms.len() > MAX_RESUME_ROOMS => {
            return Err(invalid("rooms names more than 64 rooms"))
        }
        Some(Value::Object(rooms)) => {
            let mut out = Vec::with_capacity(rooms.len());
            for (game, pos) in rooms {
                let mut one = Map::new();
                one.insert("gameId".into(), Value::String(game.clone()));
                let game = game_id(&one).map_err(|m| error(ErrorCode::InvalidGameId, m))?;
                out.push((game, position(pos).map_err(invalid)?));
            }
            out
        }
        Some(_) => return Err(invalid("rooms must be an object of gameId → position")),
    };
    let inbox = match body.get("inbox") {
        None => None,
        Some(p) => position(p).map_err(invalid)?,
    };
    Ok(Resume {
        resume_token,
        token,
        rooms,
        inbox,
    })
}

/// `{"offset":n,"epoch":"…"}`, or `null` for "no position known".
fn position(v: &Value) -> Result<Option<Position>, &'static str> {
    const SHAPE: &str = "a position must be {\"offset\":<integer >= 0>,\"epoch\":<string>} or null";
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => match (o.get("offset").and_then(Value::as_u64), o.get("epoch")) {
            (Some(offset), Some(Value::String(epoch))) if epoch.len() <= 64 => Ok(Some(Position {
                offset,
                epoch: epoch.clone(),
            })),
            _ => Err(SHAPE),
        },
        _ => Err(SHAPE),
    }
}

/// Amounts are integers of minor units: JSON `100` is accepted, `100.0`, `1e2`, `"100"` are not.
fn amount(value: Option<&Value>) -> Result<i64, &'static str> {
    let Some(value) = value else {
        return Err("amount is required");
    };
    let Value::Number(n) = value else {
        return Err("amount must be a number of minor units");
    };
    if let Some(i) = n.as_i64() {
        return if i > 0 {
            Ok(i)
        } else {
            Err("amount must be greater than zero")
        };
    }
    if n.is_u64() {
        return Err("amount is too large");
    }
    Err("amount must be an integer number of minor units")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ErrorCode) -> impl Fn(Result<ClientFrame, Rejection>) -> bool {
        move |r| matches!(r, Err(Rejection::Error { code: c, .. }) if c == code)
    }

    fn bet_rejected(reason: BetRejectReason) -> impl Fn(Result<ClientFrame, Rejection>) -> bool {
        move |r| {
            matches!(r, Err(Rejection::BetRejected { reason: got, ref idempotency_key, .. })
                if got == reason && idempotency_key == "k1")
        }
    }

    #[test]
    fn malformed_envelopes() {
        let cases: &[(&str, ErrorCode)] = &[
            ("", ErrorCode::InvalidPayload),
            ("not json", ErrorCode::InvalidPayload),
            ("{\"type\":\"ping\"", ErrorCode::InvalidPayload),
            ("[]", ErrorCode::InvalidPayload),
            ("42", ErrorCode::InvalidPayload),
            ("\"ping\"", ErrorCode::InvalidPayload),
            ("null", ErrorCode::InvalidPayload),
            ("{}", ErrorCode::InvalidPayload),
            (r#"{"type":null}"#, ErrorCode::InvalidPayload),
            (r#"{"type":5}"#, ErrorCode::InvalidPayload),
            (r#"{"type":["ping"]}"#, ErrorCode::InvalidPayload),
            (r#"{"type":"dance"}"#, ErrorCode::UnknownMessageType),
            (r#"{"type":""}"#, ErrorCode::UnknownMessageType),
            (r#"{"type":"PING"}"#, ErrorCode::UnknownMessageType),
        ];
        for (text, code) in cases {
            assert!(
                err(*code)(decode(text, true)),
                "{text:?} should give {code:?}"
            );
        }
    }

    #[test]
    fn anonymous_clients_may_only_authenticate_and_ping() {
        assert_eq!(decode(r#"{"type":"ping"}"#, false), Ok(ClientFrame::Ping));
        assert_eq!(
            decode(r#"{"type":"authenticate","token":"t"}"#, false),
            Ok(ClientFrame::Authenticate { token: "t".into() })
        );
        for text in [
            r#"{"type":"join_game","gameId":"g"}"#,
            r#"{"type":"leave_game","gameId":"g"}"#,
            r#"{"type":"place_bet"}"#,
            r#"{"type":"join_game"}"#,
        ] {
            assert!(
                err(ErrorCode::NotAuthenticated)(decode(text, false)),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_or_non_string_token_decodes_to_empty_token() {
        for text in [
            r#"{"type":"authenticate"}"#,
            r#"{"type":"authenticate","token":3}"#,
        ] {
            assert_eq!(
                decode(text, false),
                Ok(ClientFrame::Authenticate {
                    token: String::new()
                })
            );
        }
    }

    #[test]
    fn resume_frames() {
        let ok = decode(
            r#"{"type":"resume","resumeToken":"r","rooms":{"g1":{"offset":3,"epoch":"e"},"g2":null},"inbox":{"offset":0,"epoch":"u"}}"#,
            false,
        )
        .unwrap();
        let ClientFrame::Resume(r) = ok else {
            panic!("{ok:?}")
        };
        assert_eq!(r.resume_token, "r");
        assert_eq!(r.token, None);
        let mut rooms = r.rooms.clone();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            rooms,
            vec![
                (
                    "g1".to_string(),
                    Some(Position {
                        offset: 3,
                        epoch: "e".into()
                    })
                ),
                ("g2".to_string(), None)
            ]
        );
        assert_eq!(r.inbox.unwrap().offset, 0);
        assert!(matches!(
            decode(r#"{"type":"resume","token":"jwt"}"#, false),
            Ok(ClientFrame::Resume(Resume { rooms, inbox: None, .. })) if rooms.is_empty()
        ));
        let invalid = err(ErrorCode::InvalidPayload);
        for bad in [
            r#"{"type":"resume"}"#,
            r#"{"type":"resume","resumeToken":""}"#,
            r#"{"type":"resume","resumeToken":7}"#,
            r#"{"type":"resume","resumeToken":"r","token":1}"#,
            r#"{"type":"resume","resumeToken":"r","rooms":[]}"#,
            r#"{"type":"resume","resumeToken":"r","rooms":{"g":{"offset":-1,"epoch":"e"}}}"#,
            r#"{"type":"resume","resumeToken":"r","rooms":{"g":{"offset":1.5,"epoch":"e"}}}"#,
            r#"{"type":"resume","resumeToken":"r","rooms":{"g":{"offset":1}}}"#,
            r#"{"type":"resume","resumeToken":"r","rooms":{"g":5}}"#,
            r#"{"type":"resume","resumeToken":"r","inbox":"x"}"#,
        ] {
            assert!(invalid(decode(bad, false)), "{bad}");
        }
        assert!(err(ErrorCode::InvalidGameId)(decode(
            r#"{"type":"resume","resumeToken":"r","rooms":{"":null}}"#,
            false
        )));
    }

    #[test]
    fn game_ids() {
        assert_eq!(
            decode(r#"{"type":"join_game","gameId":"dice-1"}"#, true),
            Ok(ClientFrame::JoinGame {
                game_id: "dice-1".into()
            })
        );
        assert_eq!(
            decode(r#"{"type":"leave_game","gameId":"dice-1"}"#, true),
            Ok(ClientFrame::LeaveGame {
                game_id: "dice-1".into()
            })
        );
        let long = format!(r#"{{"type":"join_game","gameId":"{}"}}"#, "x".repeat(65));
        let ok_len = format!(r#"{{"type":"join_game","gameId":"{}"}}"#, "x".repeat(64));
        assert!(decode(&ok_len, true).is_ok());
        for text in [
            r#"{"type":"join_game"}"#.to_string(),
            r#"{"type":"join_game","gameId":""}"#.to_string(),
            r#"{"type":"join_game","gameId":7}"#.to_string(),
            r#"{"type":"leave_game","gameId":null}"#.to_string(),
            r#"{"type":"join_game","gameId":"a\nb"}"#.to_string(),
            long,
        ] {
            assert!(err(ErrorCode::InvalidGameId)(decode(&text, true)), "{text}");
        }
    }

    fn bet(fields: &str) -> String {
        format!(r#"{{"type":"place_bet","idempotencyKey":"k1",{fields}}}"#)
    }

    #[test]
    fn a_good_bet() {
        let text = bet(
            r#""gameId":"g","amount":100,"selection":{"direction":"over","target":50.5},"clientSeed":"abc""#,
        );
        let Ok(ClientFrame::PlaceBet(b)) = decode(&text, true) else {
            panic!("bet should decode")
        };
        assert_eq!(b.game_id, "g");
        assert_eq!(b.amount, 100);
        assert_eq!(b.idempotency_key, "k1");
        assert_eq!(b.client_seed.as_deref(), Some("abc"));
        assert_eq!(b.selection["target"], 50.5);
        let max = bet(r#""gameId":"g","amount":9223372036854775807,"selection":{}"#);
        assert!(matches!(decode(&max, true), Ok(ClientFrame::PlaceBet(b)) if b.amount == i64::MAX));
    }

    #[test]
    fn idempotency_keys_must_be_usable() {
        let long = format!(
            r#"{{"type":"place_bet","idempotencyKey":"{}","gameId":"g","amount":1,"selection":{{}}}}"#,
            "k".repeat(129)
        );
        for text in [
            r#"{"type":"place_bet","gameId":"g","amount":1,"selection":{}}"#.to_string(),
            r#"{"type":"place_bet","idempotencyKey":"","gameId":"g","amount":1,"selection":{}}"#
                .to_string(),
            r#"{"type":"place_bet","idempotencyKey":12,"gameId":"g","amount":1,"selection":{}}"#
                .to_string(),
            long,
        ] {
            assert!(
                err(ErrorCode::InvalidIdempotencyKey)(decode(&text, true)),
                "{text}"
            );
        }
    }

    #[test]
    fn amounts_must_be_positive_integer_minor_units() {
        for amount in [
            "0",
            "-1",
            "-9223372036854775808",
            "1.5",
            "100.0",
            "1e2",
            "0.0001",
            "\"100\"",
            "null",
            "true",
            "[1]",
            "{}",
            "9223372036854775808",
            "18446744073709551616",
        ] {
            let text = bet(&format!(
                r#""gameId":"g","amount":{amount},"selection":{{}}"#
            ));
            assert!(
                bet_rejected(BetRejectReason::InvalidAmount)(decode(&text, true)),
                "amount {amount}"
            );
        }
        // Beyond f64 range the frame is not representable JSON at all.
        let huge = bet(r#""gameId":"g","amount":1e400,"selection":{}"#);
        assert!(err(ErrorCode::InvalidPayload)(decode(&huge, true)));
        let missing = bet(r#""gameId":"g","selection":{}"#);
        assert!(bet_rejected(BetRejectReason::InvalidAmount)(decode(
            &missing, true
        )));
    }

    #[test]
    fn other_bet_fields() {
        let big = format!(
            r#""gameId":"g","amount":1,"selection":{{"x":"{}"}}"#,
            "a".repeat(250)
        );
        let fits = format!(
            r#""gameId":"g","amount":1,"selection":{{"x":"{}"}}"#,
            "a".repeat(240)
        );
        assert!(matches!(
            decode(&bet(&fits), true),
            Ok(ClientFrame::PlaceBet(_))
        ));
        let cases = [
            (
                r#""amount":1,"selection":{}"#,
                BetRejectReason::InvalidGameId,
            ),
            (
                r#""gameId":"","amount":1,"selection":{}"#,
                BetRejectReason::InvalidGameId,
            ),
            (
                r#""gameId":"g","amount":1"#,
                BetRejectReason::InvalidSelection,
            ),
            (
                r#""gameId":"g","amount":1,"selection":"over""#,
                BetRejectReason::InvalidSelection,
            ),
            (
                r#""gameId":"g","amount":1,"selection":[1]"#,
                BetRejectReason::InvalidSelection,
            ),
            (big.as_str(), BetRejectReason::InvalidSelection),
            (
                r#""gameId":"g","amount":1,"selection":{},"clientSeed":5"#,
                BetRejectReason::InvalidClientSeed,
            ),
        ];
        for (fields, reason) in cases {
            assert!(bet_rejected(reason)(decode(&bet(fields), true)), "{fields}");
        }
        let long_seed = bet(&format!(
            r#""gameId":"g","amount":1,"selection":{{}},"clientSeed":"{}""#,
            "s".repeat(129)
        ));
        assert!(bet_rejected(BetRejectReason::InvalidClientSeed)(decode(
            &long_seed, true
        )));
        for bad in ["", "bad\\nseed"] {
            let seed = bet(&format!(
                r#""gameId":"g","amount":1,"selection":{{}},"clientSeed":"{bad}""#
            ));
            assert!(
                bet_rejected(BetRejectReason::InvalidClientSeed)(decode(&seed, true)),
                "{seed}"
            );
        }
        let seed_100 = "s".repeat(100);
        let seed = bet(&format!(
            r#""gameId":"g","amount":1,"selection":{{}},"clientSeed":"{seed_100}""#
        ));
        assert!(
            matches!(decode(&seed, true), Ok(ClientFrame::PlaceBet(b)) if b.client_seed.as_deref() == Some(seed_100.as_str()))
        );
        let null_seed = bet(r#""gameId":"g","amount":1,"selection":{},"clientSeed":null"#);
        assert!(
            matches!(decode(&null_seed, true), Ok(ClientFrame::PlaceBet(b)) if b.client_seed.is_none())
        );
    }
}
