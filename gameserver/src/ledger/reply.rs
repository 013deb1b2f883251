//! The answers of the Redis ledger's Lua scripts, parsed once: a [`Tag`] naming the outcome,
//! then its string fields, read by position with bounds checks (a short or unexpected reply is
//! [`LedgerError::Corrupt`], never a panic). Also the stored shapes the scripts write: audit
//! entries and bet records.

use redis::{FromRedisValue, ParsingError, Value};

use super::error::LedgerError;
use super::types::{BetRecord, BetState, Entry, EntryKind, Outcome, Settlement, Wager};

/// What a script answered, by its first element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tag {
    Ok,
    /// A transfer's key was applied before (its entry follows).
    Dup,
    Insufficient,
    Overflow,
    /// The audit stream refused the next entry: nothing was written.
    Log,
    /// The ledger's identity marker is not the one this process runs on.
    Identity,
    /// The room is owned by a later epoch (which follows).
    Stale,
    Accepted,
    Existing,
    Closed,
    /// Settled by this call (the record follows).
    Now,
    Settled,
    Rejected,
    Unknown,
    /// Another round of the room is open (its id follows).
    Open,
}

impl Tag {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => Self::Ok,
            "dup" => Self::Dup,
            "insufficient" => Self::Insufficient,
            "overflow" => Self::Overflow,
            "log" => Self::Log,
            "identity" => Self::Identity,
            "stale" => Self::Stale,
            "accepted" => Self::Accepted,
            "existing" => Self::Existing,
            "closed" => Self::Closed,
            "now" => Self::Now,
            "settled" => Self::Settled,
            "rejected" => Self::Rejected,
            "unknown" => Self::Unknown,
            "open" => Self::Open,
            _ => return None,
        })
    }
}

/// A script's answer: its tag and the fields after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub tag: Tag,
    pub fields: Vec<String>,
}

impl Reply {
    /// Field `i` after the tag, or a corrupt-reply error naming what was expected.
    pub fn field(&self, i: usize, what: &str) -> Result<&str, LedgerError> {
        self.fields
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| corrupt(format!("{:?} reply without its {what}", self.tag)))
    }

    /// Field `i` as a number.
    pub fn number<T: std::str::FromStr>(&self, i: usize, what: &str) -> Result<T, LedgerError> {
        num(self.field(i, what)?, what)
    }

    /// The fields as a bet record (a flat name/value list).
    pub fn record(&self) -> Result<BetRecord, LedgerError> {
        parse_record(&self.fields)
    }

    /// An error for a reply the caller did not expect.
    pub fn unexpected(&self, script: &str) -> LedgerError {
        corrupt(format!(
            "{script} script answered {:?} {:?}",
            self.tag, self.fields
        ))
    }

    /// The audit stream's refusal as an error.
    pub fn log_refused(&self) -> LedgerError {
        corrupt(format!(
            "the audit stream refused the next entry, nothing was written ({})",
            self.fields.first().map_or("", String::as_str)
        ))
    }

    /// Parses a script's raw answer; an unknown or missing tag is corrupt.
    pub fn parse(v: Value) -> Result<Self, LedgerError> {
        Self::from_redis_value(v).map_err(corrupt)
    }
}

impl FromRedisValue for Reply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let mut flat: Vec<String> = Vec::from_redis_value(v)?;
        if flat.is_empty() {
            return Err(ParsingError::from("an empty script reply".to_owned()));
        }
        let head = flat.remove(0);
        let tag = Tag::parse(&head)
            .ok_or_else(|| ParsingError::from(format!("a script reply tagged {head:?}")))?;
        Ok(Self { tag, fields: flat })
    }
}

/// A settle script's answer: the record's previous state ("now" when this call settled it)
/// and the record, or why it could not be settled.
pub(super) fn settlement(r: &Reply, user_id: &str, key: &str) -> Result<Settlement, LedgerError> {
    match r.tag {
        Tag::Now => Ok(Settlement {
            record: r.record()?,
            now: true,
        }),
        Tag::Settled | Tag::Rejected => Ok(Settlement {
            record: r.record()?,
            now: false,
        }),
        Tag::Unknown => Err(LedgerError::UnknownBet {
            user_id: user_id.into(),
            key: key.into(),
        }),
        Tag::Overflow => Err(LedgerError::Overflow(
            r.fields.first().cloned().unwrap_or_default(),
        )),
        Tag::Log => Err(r.log_refused()),
        _ => Err(r.unexpected("settle")),
    }
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(what.to_string())
}

pub(super) fn kind_str(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Bet => "bet",
        EntryKind::Payout => "payout",
        EntryKind::Deposit => "deposit",
        EntryKind::Withdrawal => "withdrawal",
    }
}

fn parse_kind(s: &str) -> Result<EntryKind, LedgerError> {
    Ok(match s {
        "bet" => EntryKind::Bet,
        "payout" => EntryKind::Payout,
        "deposit" => EntryKind::Deposit,
        "withdrawal" => EntryKind::Withdrawal,
        other => return Err(corrupt(format!("entry kind {other:?}"))),
    })
}

pub(super) fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, LedgerError> {
    s.parse()
        .map_err(|_| corrupt(format!("{what} is not a number: {s:?}")))
}

/// Entries are stored as JSON arrays of strings (Lua cannot print 64-bit integers in JSON);
/// `shard` is the stream the entry was read from.
pub(super) fn parse_entry(text: &str, shard: u16) -> Result<Entry, LedgerError> {
    let f: Vec<String> = serde_json::from_str(text).map_err(corrupt)?;
    let [seq, key, kind, from, to, amount, fb, tb, at, memo] = f.as_slice() else {
        return Err(corrupt(format!("entry {text}")));
    };
    Ok(Entry {
        seq: num(seq, "seq")?,
        key: key.clone(),
        kind: parse_kind(kind)?,
        from: from.clone(),
        to: to.clone(),
        amount: num(amount, "amount")?,
        from_balance: num(fb, "balance")?,
        to_balance: num(tb, "balance")?,
        at_ms: num(at, "time")?,
        memo: memo.clone(),
        shard,
    })
}

/// A bet record from its hash fields (flat name/value list).
pub(super) fn parse_record(fields: &[String]) -> Result<BetRecord, LedgerError> {
    let get = |name: &str| {
        fields
            .chunks_exact(2)
            .find(|p| p[0] == name)
            .map(|p| p[1].as_str())
    };
    let need = |name: &str| get(name).ok_or_else(|| corrupt(format!("bet record lacks {name}")));
    let wager: Wager = serde_json::from_str(need("wager")?).map_err(corrupt)?;
    let state = match need("state")? {
        "pending" => BetState::Pending {
            balance: num(need("balance")?, "balance")?,
        },
        "settled" => BetState::Settled {
            roll: num(need("roll")?, "roll")?,
            outcome: if need("outcome")? == "win" {
                Outcome::Win
            } else {
                Outcome::Lose
            },
            payout: num(need("payout")?, "payout")?,
            balance: num(need("balance")?, "balance")?,
        },
        "rejected" => BetState::Rejected {
            reason: need("reason")?.to_owned(),
            balance: get("balance").map(|b| num(b, "balance")).transpose()?,
        },
        other => return Err(corrupt(format!("bet state {other:?}"))),
    };
    Ok(BetRecord { wager, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: &[&str]) -> Result<Reply, LedgerError> {
        Reply::parse(Value::Array(
            items
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        ))
    }

    #[test]
    fn a_reply_is_its_tag_and_fields() {
        let r = reply(&["stale", "7"]).unwrap();
        assert_eq!(r.tag, Tag::Stale);
        assert_eq!(r.number::<u64>(0, "epoch"), Ok(7));
    }

    #[test]
    fn short_or_strange_replies_are_corrupt_not_panics() {
        let r = reply(&["ok"]).unwrap();
        assert_eq!(r.field(0, "epoch").unwrap_err().code(), "LEDGER_CORRUPT");
        assert_eq!(
            r.number::<u64>(3, "n").unwrap_err().code(),
            "LEDGER_CORRUPT"
        );
        assert!(reply(&[]).is_err());
        assert!(reply(&["bogus", "1"]).is_err());
        assert!(Reply::parse(Value::Int(3)).is_err());
        assert_eq!(
            settlement(&reply(&["now"]).unwrap(), "u", "k")
                .unwrap_err()
                .code(),
            "LEDGER_CORRUPT"
        );
        assert_eq!(
            settlement(&reply(&["unknown"]).unwrap(), "u", "k")
                .unwrap_err()
                .code(),
            "UNKNOWN_BET"
        );
    }
}
