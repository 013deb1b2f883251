//! The JSON frames the engine sends to players. Pure builders: each returns the exact text every
//! gateway forwards unchanged (serialised once here).

use serde_json::{json, Value};

use crate::game::rules::{hundredths_json, HOUSE_EDGE_BP};
use crate::ledger::{BetRecord, BetState};

/// The public data of a round, known from the moment it opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundInfo {
    pub game_id: String,
    pub round_id: String,
    pub nonce: u64,
    pub commitment: String,
    pub betting_opens_at: u64,
    pub betting_closes_at: u64,
}

/// What the roll revealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reveal {
    pub roll: u32,
    pub server_seed: String,
    pub client_seed_mix: String,
    pub client_seeds: Vec<String>,
    pub bets: usize,
}

/// Totals once every bet of the round is settled.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RoundTotals {
    pub bets: usize,
    pub winners: usize,
    pub wagered: i64,
    pub paid: i64,
}

fn game_event(event: &str, data: Value, at_ms: u64) -> String {
    json!({"type": "game_event", "event": event, "data": data, "timestamp": at_ms}).to_string()
}

pub fn round_started(r: &RoundInfo, at_ms: u64) -> String {
    game_event(
        "round_started",
        json!({
            "gameId": r.game_id,
            "roundId": r.round_id,
            "nonce": r.nonce,
            "commitment": r.commitment,
            "bettingOpensAt": r.betting_opens_at,
            "bettingClosesAt": r.betting_closes_at,
            "houseEdgeBp": HOUSE_EDGE_BP,
        }),
        at_ms,
    )
}

pub fn dice_rolled(r: &RoundInfo, v: &Reveal, at_ms: u64) -> String {
    game_event(
        "dice_rolled",
        json!({
            "gameId": r.game_id,
            "roundId": r.round_id,
            "nonce": r.nonce,
            "roll": hundredths_json(v.roll),
            "commitment": r.commitment,
            "serverSeed": v.server_seed,
            "clientSeedMix": v.client_seed_mix,
            "clientSeeds": v.client_seeds,
            "bets": v.bets,
        }),
        at_ms,
    )
}

pub fn round_result(r: &RoundInfo, v: &Reveal, t: &RoundTotals, at_ms: u64) -> String {
    game_event(
        "round_result",
        json!({
            "gameId": r.game_id,
            "roundId": r.round_id,
            "nonce": r.nonce,
            "roll": hundredths_json(v.roll),
            "serverSeed": v.server_seed,
            "clientSeedMix": v.client_seed_mix,
            "bets": t.bets,
            "winners": t.winners,
            "totalWagered": t.wagered,
            "totalPaid": t.paid,
        }),
        at_ms,
    )
}

/// `bet_settled` or `bet_rejected` for a final record; `None` while it is still pending.
/// Built only from the record, so a repeated key gets the same outcome as the original.
pub fn bet_outcome(record: &BetRecord, at_ms: u64) -> Option<String> {
    let w = &record.wager;
    match &record.state {
        BetState::Pending { .. } => None,
        BetState::Settled {
            roll,
            outcome,
            payout,
            balance,
        } => Some(
            json!({
                "type": "bet_settled",
                "idempotencyKey": w.key,
                "gameId": w.game_id,
                "roundId": w.round_id,
                "outcome": outcome,
                "roll": hundredths_json(*roll),
                "amount": w.amount,
                "payout": payout,
                "balance": balance,
                "selection": w.selection,
                "timestamp": at_ms,
            })
            .to_string(),
        ),
        BetState::Rejected { reason, balance } => {
            let mut frame = json!({
                "type": "bet_rejected",
                "idempotencyKey": w.key,
                "gameId": w.game_id,
                "reason": reason,
                "timestamp": at_ms,
            });
            if let (Some(b), Some(obj)) = (balance, frame.as_object_mut()) {
                obj.insert("balance".into(), json!(b));
            }
            Some(frame.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Outcome, Wager};

    fn wager() -> Wager {
        Wager {
            user_id: "alice".into(),
            key: "k1".into(),
            game_id: "g1".into(),
            round_id: "g1-7".into(),
            amount: 100,
            selection: json!({"direction":"over","target":50.0}),
            client_seed: None,
            delivery: String::new(),
        }
    }

    #[test]
    fn settled_frame_has_every_field() {
        let rec = BetRecord {
            wager: wager(),
            state: BetState::Settled {
                roll: 5001,
                outcome: Outcome::Win,
                payout: 198,
                balance: 1098,
            },
        };
        let v: Value = serde_json::from_str(&bet_outcome(&rec, 42).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type":"bet_settled","idempotencyKey":"k1","gameId":"g1","roundId":"g1-7",
                   "outcome":"win","roll":50.01,"amount":100,"payout":198,"balance":1098,
                   "selection":{"direction":"over","target":50.0},"timestamp":42})
        );
    }

    #[test]
    fn rejected_and_pending_frames() {
        let rec = BetRecord {
            wager: wager(),
            state: BetState::Rejected {
                reason: "INSUFFICIENT_BALANCE".into(),
                balance: Some(3),
            },
        };
        let v: Value = serde_json::from_str(&bet_outcome(&rec, 1).unwrap()).unwrap();
        assert_eq!(v["type"], "bet_rejected");
        assert_eq!(v["reason"], "INSUFFICIENT_BALANCE");
        assert_eq!(v["balance"], 3);
        let pending = BetRecord {
            wager: wager(),
            state: BetState::Pending { balance: 0 },
        };
        assert_eq!(bet_outcome(&pending, 1), None);
    }

    #[test]
    fn round_frames() {
        let r = RoundInfo {
            game_id: "g1".into(),
            round_id: "g1-7".into(),
            nonce: 7,
            commitment: "c".into(),
            betting_opens_at: 10,
            betting_closes_at: 20,
        };
        let v: Value = serde_json::from_str(&round_started(&r, 10)).unwrap();
        assert_eq!(v["type"], "game_event");
        assert_eq!(v["event"], "round_started");
        assert_eq!(v["data"]["bettingClosesAt"], 20);
        assert_eq!(v["timestamp"], 10);
        let reveal = Reveal {
            roll: 4217,
            server_seed: "s".into(),
            client_seed_mix: "m".into(),
            client_seeds: vec!["a".into()],
            bets: 1,
        };
        let v: Value = serde_json::from_str(&dice_rolled(&r, &reveal, 21)).unwrap();
        assert_eq!(v["data"]["roll"].to_string(), "42.17");
        assert_eq!(v["data"]["serverSeed"], "s");
        let v: Value =
            serde_json::from_str(&round_result(&r, &reveal, &RoundTotals::default(), 22)).unwrap();
        assert_eq!(v["event"], "round_result");
    }
}
