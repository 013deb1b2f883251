//! Over/under dice: the roll is a number 0.00–99.99 (hundredths 0..=9999). A bet picks a
//! direction and a target; `over` wins when roll > target, `under` wins when roll < target.
//! Targets are parsed exactly from their decimal text (never through a float), and payouts use
//! integer arithmetic with a fixed house edge. See docs/game.md for the worked example.

use serde::Serialize;

use crate::protocol::BetRejectReason;

/// Number of equally likely rolls (0.00 ..= 99.99).
pub const ROLL_OUTCOMES: u32 = 10_000;
/// House edge in basis points: a bet returns 99% of its stake on average.
pub const HOUSE_EDGE_BP: i64 = 100;
/// Fewest winning rolls a selection may have (a 1.00% win chance).
pub const MIN_WINNING_ROLLS: u32 = 100;
/// Most winning rolls a selection may have (a 98.00% win chance).
pub const MAX_WINNING_ROLLS: u32 = 9_800;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Over,
    Under,
}

/// A validated bet selection. `target` is in hundredths (49.50 → 4950).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub direction: Direction,
    pub target: u32,
}

/// Why a selection or amount is unacceptable; `code()` is the `bet_rejected` reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "selection must be an object {{\"direction\":\"over\"|\"under\",\"target\":<number>}}"
    )]
    SelectionShape,
    #[error("direction must be \"over\" or \"under\"")]
    Direction,
    #[error("target must be a number 0.00-99.99 with at most two decimals, got {0}")]
    TargetFormat(String),
    #[error("target {target} {direction} gives {winning} winning rolls of 10000; allowed {MIN_WINNING_ROLLS}..={MAX_WINNING_ROLLS}")]
    WinChance {
        direction: &'static str,
        target: String,
        winning: u32,
    },
    #[error("amount must be a positive integer number of minor units, got {0}")]
    Amount(i64),
    #[error("payout for amount {0} would overflow")]
    PayoutOverflow(i64),
}

impl RuleError {
    /// The protocol reason code for `bet_rejected`.
    pub fn code(&self) -> BetRejectReason {
        match self {
            RuleError::Amount(_) | RuleError::PayoutOverflow(_) => BetRejectReason::InvalidAmount,
            _ => BetRejectReason::InvalidSelection,
        }
    }
}

impl Selection {
    /// Parse `{"direction":"over"|"under","target":<number or decimal string>}` exactly.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, RuleError> {
        let obj = value.as_object().ok_or(RuleError::SelectionShape)?;
        let direction = match obj.get("direction").and_then(|d| d.as_str()) {
            Some("over") => Direction::Over,
            Some("under") => Direction::Under,
            Some(_) => return Err(RuleError::Direction),
            None => return Err(RuleError::SelectionShape),
        };
        // serde_json keeps non-integers as f64 and prints them with the shortest text that
        // round-trips, which is the original text for any number of at most 15 digits, so the
        // decimal text below is exactly what the client sent (up to trailing zeros).
        let text = match obj.get("target") {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(RuleError::SelectionShape),
        };
        let Some(target) = parse_hundredths(&text) else {
            return Err(RuleError::TargetFormat(text));
        };
        let selection = Selection { direction, target };
        let winning = selection.winning_rolls();
        if !(MIN_WINNING_ROLLS..=MAX_WINNING_ROLLS).contains(&winning) {
            return Err(RuleError::WinChance {
                direction: selection.direction_str(),
                target: format_hundredths(target),
                winning,
            });
        }
        Ok(selection)
    }

    pub fn direction_str(&self) -> &'static str {
        match self.direction {
            Direction::Over => "over",
            Direction::Under => "under",
        }
    }

    /// How many of the 10,000 rolls win.
    pub fn winning_rolls(&self) -> u32 {
        match self.direction {
            // Rolls target+1 ..= 9999.
            Direction::Over => (ROLL_OUTCOMES - 1).saturating_sub(self.target),
            // Rolls 0 ..= target-1.
            Direction::Under => self.target.min(ROLL_OUTCOMES),
        }
    }

    pub fn wins(&self, roll: u32) -> bool {
        match self.direction {
            Direction::Over => roll > self.target,
            Direction::Under => roll < self.target,
        }
    }

    /// Total returned to the player on a win (stake included), rounded down:
    /// `floor(amount × (10000 − edge_bp) / winning_rolls)`.
    pub fn win_payout(&self, amount: i64) -> Result<i64, RuleError> {
        if amount <= 0 {
            return Err(RuleError::Amount(amount));
        }
        let winning = i128::from(self.winning_rolls().max(1));
        let payout = i128::from(amount) * i128::from(10_000 - HOUSE_EDGE_BP) / winning;
        i64::try_from(payout).map_err(|_| RuleError::PayoutOverflow(amount))
    }

    /// Payout for a given roll: the win payout, or 0 on a loss.
    pub fn payout(&self, amount: i64, roll: u32) -> Result<i64, RuleError> {
        let win = self.win_payout(amount)?;
        Ok(if self.wins(roll) { win } else { 0 })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "direction": self.direction_str(),
            "target": hundredths_json(self.target),
        })
    }
}

/// Validate a bet amount against a selection before any money moves.
pub fn check_amount(selection: &Selection, amount: i64) -> Result<(), RuleError> {
    selection.win_payout(amount).map(|_| ())
}

/// "49.5" → 4950, "7" → 700, "0.07" → 7. At most two significant decimals (trailing zeros are
/// fine), no sign, no exponent, value ≤ 99.99.
pub fn parse_hundredths(text: &str) -> Option<u32> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || int.len() > 2 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && frac.is_empty()) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return None;
    }
    let int: u32 = int.parse().ok()?;
    let mut cents = 0;
    for (i, b) in frac.bytes().enumerate() {
        cents += u32::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    Some(int * 100 + cents)
}

/// 4217 → "42.17".
pub fn format_hundredths(h: u32) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// 4217 → JSON number 42.17 (the nearest double prints back as exactly "42.17").
pub fn hundredths_json(h: u32) -> serde_json::Value {
    serde_json::Number::from_f64(f64::from(h) / 100.0)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_targets_exactly() {
        let cases: &[(&str, Option<u32>)] = &[
            ("50", Some(5000)),
            ("49.5", Some(4950)),
            ("49.50", Some(4950)),
            ("0.07", Some(7)),
            ("99.99", Some(9999)),
            ("7", Some(700)),
            ("49.505", None),
            ("100", None),
            ("-1", None),
            ("1e1", None),
            ("", None),
            ("5.", None),
            (".5", None),
            ("4a", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_hundredths(text), *want, "{text:?}");
        }
    }

    #[test]
    fn selection_from_json_table() {
        let ok = |v: serde_json::Value, d, t| {
            assert_eq!(
                Selection::from_json(&v),
                Ok(Selection {
                    direction: d,
                    target: t
                }),
                "{v}"
            )
        };
        ok(
            json!({"direction":"over","target":50}),
            Direction::Over,
            5000,
        );
        ok(
            json!({"direction":"under","target":49.99}),
            Direction::Under,
            4999,
        );
        ok(
            json!({"direction":"over","target":"12.30"}),
            Direction::Over,
            1230,
        );
        // Values parsed from JSON text keep their exact decimal meaning.
        let parsed: serde_json::Value =
            serde_json::from_str(r#"{"direction":"under","target":57.29}"#).unwrap();
        // 57.29 × 100 in floating point is 5728.999…; the text route gives exactly 5729.
        assert_eq!(Selection::from_json(&parsed).unwrap().target, 5729);
        let bad = |v: serde_json::Value, code: &str| {
            let err = Selection::from_json(&v).unwrap_err();
            assert_eq!(err.code().as_str(), code, "{v}: {err}");
        };
        bad(json!(null), "INVALID_SELECTION");
        bad(
            json!({"direction":"sideways","target":50}),
            "INVALID_SELECTION",
        );
        bad(json!({"target":50}), "INVALID_SELECTION");
        bad(json!({"direction":"over"}), "INVALID_SELECTION");
        bad(
            json!({"direction":"over","target":50.123}),
            "INVALID_SELECTION",
        );
        bad(json!({"direction":"over","target":-5}), "INVALID_SELECTION");
        bad(
            json!({"direction":"over","target":true}),
            "INVALID_SELECTION",
        );
        // Win chance band: over 98.99 leaves 100 winning rolls (ok), over 99.00 leaves 99.
        ok(
            json!({"direction":"over","target":98.99}),
            Direction::Over,
            9899,
        );
        bad(json!({"direction":"over","target":99}), "INVALID_SELECTION");
        ok(
            json!({"direction":"over","target":1.99}),
            Direction::Over,
            199,
        );
        bad(
            json!({"direction":"over","target":1.98}),
            "INVALID_SELECTION",
        );
        ok(
            json!({"direction":"under","target":1}),
            Direction::Under,
            100,
        );
        bad(
            json!({"direction":"under","target":0.99}),
            "INVALID_SELECTION",
        );
        ok(
            json!({"direction":"under","target":98}),
            Direction::Under,
            9800,
        );
        bad(
            json!({"direction":"under","target":98.01}),
            "INVALID_SELECTION",
        );
    }

    #[test]
    fn wins_and_payouts_table() {
        let over50 = Selection {
            direction: Direction::Over,
            target: 5000,
        };
        let under50 = Selection {
            direction: Direction::Under,
            target: 5000,
        };
        // (selection, amount, roll, payout)
        let cases = [
            (over50, 100, 5001, 198), // 100 × 9900 / 4999 = 198.04 → 198
            (over50, 100, 5000, 0),   // equal is not over
            (over50, 100, 9999, 198),
            (under50, 100, 4999, 198), // 100 × 9900 / 5000 = 198
            (under50, 100, 5000, 0),
            (under50, 1, 0, 1), // 1 × 9900 / 5000 = 1.98 → 1
            (
                Selection {
                    direction: Direction::Under,
                    target: 100,
                },
                1000,
                99,
                99_000,
            ),
        ];
        for (sel, amount, roll, want) in cases {
            assert_eq!(
                sel.payout(amount, roll),
                Ok(want),
                "{sel:?} {amount} {roll}"
            );
        }
        assert_eq!(over50.payout(0, 1), Err(RuleError::Amount(0)));
        assert_eq!(over50.payout(-5, 1), Err(RuleError::Amount(-5)));
        assert_eq!(
            over50.win_payout(i64::MAX).unwrap_err().code(),
            BetRejectReason::InvalidAmount
        );
    }

    #[test]
    fn house_edge_holds_over_every_roll() {
        // Summing the payout over all 10,000 equally likely rolls gives the expected return:
        // at most 99% of the stake, and within one unit per winning roll of it (floor).
        for target in [199u32, 2500, 4950, 5000, 9899] {
            let sel = Selection {
                direction: Direction::Over,
                target,
            };
            let stake = 1_000_000i64;
            let total: i64 = (0..ROLL_OUTCOMES)
                .map(|r| sel.payout(stake, r).unwrap())
                .sum();
            let fair = stake * 9_900; // 99% of stake, times 10,000 rolls
            assert!(total <= fair, "target {target}");
            assert!(
                fair - total < i64::from(sel.winning_rolls()),
                "target {target}"
            );
        }
    }

    #[test]
    fn formats_hundredths() {
        assert_eq!(format_hundredths(4217), "42.17");
        assert_eq!(format_hundredths(7), "0.07");
        assert_eq!(hundredths_json(4217).to_string(), "42.17");
        assert_eq!(hundredths_json(9999).to_string(), "99.99");
        assert_eq!(hundredths_json(0).to_string(), "0.0");
    }
}
