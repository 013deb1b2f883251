//! Ledger in Redis. Each operation is one Lua script, so the idempotency check, the balance
//! check, the debit and the entry record happen atomically on the server (no client-side locks
//! that could expire mid-operation). Every entry is also appended to a Redis stream
//! (`<prefix>:ledger:log`, id `<seq>-1`) for audit and dispute resolution.
//!
//! Keys (prefix `gf` by default): `ledger:balances` (hash account → balance),
//! `ledger:applied:<transfer key>` (the entry a deposit's or withdrawal's key produced; a bet's
//! stake and payout are keyed by its bet record instead), `ledger:seq`, `ledger:log`
//! (stream), `bet:<len(user)>:<user>:<key>` (hash: one bet record), `round:<roundId>:bets`
//! (list).
//!
//! Idempotency keys are kept for a retention period (default 24 h, like payment APIs): within
//! it a repeated key gets its first outcome, after it the key may be used afresh. A transfer's
//! key expires that long after it was applied; a bet record that long after its outcome became
//! final (a pending bet never expires, so it is always settled). The audit stream keeps every
//! entry until it is archived (`gameserver ledger-archive`, [`super::archive`]), which trims the
//! archived entries and records how far (`ledger:log:archived`).
//!
//! Lua numbers are doubles, so balances are limited to ±(2^53 − 1) minor units here; larger
//! movements are refused as overflow rather than rounded. A user refused for insufficient
//! balance who had no balance yet is left with an explicit 0 (the debit is undone, not avoided).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

use super::{
    check_transfer, now_ms, user_account, BetRecord, BetState, Entry, EntryKind, Ledger,
    LedgerError, Outcome, Placed, Posted, RoundState, SettleItem, Settlement, Transfer, Wager,
    HOUSE,
};

/// Largest balance magnitude representable exactly in Redis Lua.
pub const MAX_BALANCE: i64 = super::MAX_AMOUNT;

const TRANSFER_FN: &str = r#"
local function fmt(n) return string.format('%.0f', n) end
-- Moves `amount` and appends the entry to the audit stream; k: the balances hash, (unused),
-- the sequence, the audit stream. A user payer may not go below zero and a system account not
-- below -max; the payee's bound is checked after its increment. Each bound is checked on the
-- incremented value and the increment undone if crossed (one call fewer than reading first;
-- the script is atomic, so nobody sees the undone value).
local function move(k, key, kind, from, to, amount, memo, now, from_system, max)
  local fb = redis.call('HINCRBY', k[1], from, fmt(-amount))
  if not from_system and fb < 0 then
    return {'insufficient', fmt(redis.call('HINCRBY', k[1], from, fmt(amount)))}
  end
  if fb < -max then
    redis.call('HINCRBY', k[1], from, fmt(amount))
    return {'overflow', from}
  end
  local tb = redis.call('HINCRBY', k[1], to, fmt(amount))
  if tb > max then
    redis.call('HINCRBY', k[1], from, fmt(amount))
    redis.call('HINCRBY', k[1], to, fmt(-amount))
    return {'overflow', to}
  end
  local seq = redis.call('INCR', k[3])
  local entry = cjson.encode({fmt(seq), key, kind, from, to, fmt(amount), fmt(fb), fmt(tb), now, memo})
  redis.call('XADD', k[4], fmt(seq) .. '-1', 'entry', entry)
  return {'ok', entry, fb, tb}
end

-- A transfer with its own idempotency record (k[2]: the key's applied entry).
local function transfer(k, key, kind, from, to, amount, memo, now, from_system, max)
  local prev = redis.call('GET', k[2])
  if prev then return {'dup', prev} end
  local t = move(k, key, kind, from, to, amount, memo, now, from_system, max)
  if t[1] == 'ok' then redis.call('SET', k[2], t[2], 'PX', RETENTION) end
  return t
end

-- Settles the pending bet record `bk`; returns its previous state ('now' if this call settled
-- it) followed by the record's fields. The record's state is the payout's idempotency: it turns
-- 'settled' in the same step as the payout moves.
local function settle(k, bk, payout_key, account, payout_arg, roll, now, max, house)
  local rec = redis.call('HMGET', bk, 'state', 'round', 'wager')
  local st = rec[1]
  if not st then return {'unknown'} end
  if st ~= 'pending' then
    local r = redis.call('HGETALL', bk)
    table.insert(r, 1, st)
    return r
  end
  local payout = tonumber(payout_arg)
  local bal
  local outcome = 'lose'
  if payout > 0 then
    local t = move(k, payout_key, 'payout', house, account, payout, rec[2] or '', now, true,
      tonumber(max))
    if t[1] ~= 'ok' then return t end
    bal = fmt(t[4])
    outcome = 'win'
  else
    bal = redis.call('HGET', k[1], account) or '0'
  end
  redis.call('HSET', bk, 'state', 'settled', 'roll', roll, 'payout', payout_arg,
    'outcome', outcome, 'balance', bal)
  redis.call('PEXPIRE', bk, RETENTION)
  return {'now', 'wager', rec[3], 'state', 'settled', 'roll', roll, 'payout', payout_arg,
    'outcome', outcome, 'balance', bal}
end
"#;

const TRANSFER: &str = r#"
return transfer(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
  ARGV[8] == '1', tonumber(ARGV[9]))
"#;

/// KEYS: balances, seq, log, the bet record, the round's bet list, the round's closed marker.
/// The bet record is the stake's idempotency record: it is written in the same step as the
/// debit, so no separate applied key is kept for stakes.
const PLACE_BET: &str = r#"
local k = {KEYS[1], false, KEYS[2], KEYS[3]}
if redis.call('EXISTS', KEYS[4]) == 1 then
  local r = redis.call('HGETALL', KEYS[4])
  table.insert(r, 1, 'existing')
  return r
end
if redis.call('EXISTS', KEYS[6]) == 1 then return {'closed'} end
local t = move(k, ARGV[1], 'bet', ARGV[2], ARGV[8], tonumber(ARGV[3]), ARGV[5], ARGV[6],
  false, tonumber(ARGV[7]))
if t[1] == 'ok' then
  local bal = fmt(t[3])
  redis.call('HSET', KEYS[4], 'wager', ARGV[4], 'state', 'pending', 'balance', bal, 'round', ARGV[5])
  redis.call('RPUSH', KEYS[5], KEYS[4])
  return {'accepted', bal}
elseif t[1] == 'insufficient' then
  redis.call('HSET', KEYS[4], 'wager', ARGV[4], 'state', 'rejected',
    'reason', 'INSUFFICIENT_BALANCE', 'balance', t[2], 'round', ARGV[5])
  redis.call('PEXPIRE', KEYS[4], RETENTION)
  return {'insufficient', 'wager', ARGV[4], 'state', 'rejected',
    'reason', 'INSUFFICIENT_BALANCE', 'balance', t[2], 'round', ARGV[5]}
end
return {t[1], t[2]}
"#;

/// KEYS: balances, seq, log, the bet record.
const SETTLE_BET: &str = r#"
return settle({KEYS[1], false, KEYS[2], KEYS[3]}, KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  ARGV[5], ARGV[6], ARGV[7])
"#;

/// KEYS: balances, seq, log, then each bet's record. ARGV: now, max, house, then per bet its
/// payout key, account, payout and roll.
const SETTLE_MANY: &str = r#"
local out = {}
local k = {KEYS[1], false, KEYS[2], KEYS[3]}
for i = 0, #KEYS - 4 do
  out[i + 1] = settle(k, KEYS[4 + i], ARGV[4 + 4 * i], ARGV[5 + 4 * i], ARGV[6 + 4 * i],
    ARGV[7 + 4 * i], ARGV[1], ARGV[2], ARGV[3])
end
return out
"#;

const FINISH_ROUND: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).roundId == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"#;

/// Drop audit entries up to a sequence number that is already recorded (never ahead of the
/// log) and remember the highest one dropped. KEYS: the sequence, the audit stream, the
/// archived-through marker.
const TRIM_LOG: &str = r#"
local through = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if through > last then return {-1, last} end
local removed = redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', through + 1) .. '-0')
local before = tonumber(redis.call('GET', KEYS[3]) or '0')
if through > before then redis.call('SET', KEYS[3], ARGV[1]) else through = before end
return {removed, through}
"#;

const REJECT_BET: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'wager', ARGV[1], 'state', 'rejected', 'reason', ARGV[2], 'round', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"#;

/// How long idempotency keys and final bet records are kept unless configured.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

pub struct RedisLedger {
    conn: ConnectionManager,
    prefix: String,
    retention_ms: u64,
    transfer: Script,
    place: Script,
    settle: Script,
    settle_many: Script,
    reject: Script,
    finish: Script,
    trim: Script,
}

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt(what.to_string())
}

fn kind_str(kind: EntryKind) -> &'static str {
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

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, LedgerError> {
    s.parse()
        .map_err(|_| corrupt(format!("{what} is not a number: {s:?}")))
}

/// Entries are stored as JSON arrays of strings (Lua cannot print 64-bit integers in JSON).
fn parse_entry(text: &str) -> Result<Entry, LedgerError> {
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
    })
}

/// A bet record from its hash fields (flat name/value list).
fn parse_record(fields: &[String]) -> Result<BetRecord, LedgerError> {
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

/// Payouts the scripts can hold exactly.
fn check_payout(user_id: &str, payout: i64) -> Result<(), LedgerError> {
    if payout < 0 {
        return Err(LedgerError::InvalidAmount(payout));
    }
    if payout > MAX_BALANCE {
        return Err(LedgerError::Overflow(user_account(user_id)));
    }
    Ok(())
}

/// A settle script's answer: the record's previous state ("now" when this call settled it)
/// and the record, or why it could not be settled.
fn settlement(r: &[String], user_id: &str, key: &str) -> Result<Settlement, LedgerError> {
    match r.first().map(String::as_str) {
        Some("now") => Ok(Settlement {
            record: parse_record(&r[1..])?,
            now: true,
        }),
        Some("settled" | "rejected") => Ok(Settlement {
            record: parse_record(&r[1..])?,
            now: false,
        }),
        Some("unknown") => Err(LedgerError::UnknownBet {
            user_id: user_id.into(),
            key: key.into(),
        }),
        Some("overflow") => Err(LedgerError::Overflow(r.get(1).cloned().unwrap_or_default())),
        _ => Err(corrupt(format!("settle script answered {r:?}"))),
    }
}

impl RedisLedger {
    /// `prefix` namespaces every key (several fleets may share one Redis).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        // The retention is the script's last argument (RETENTION in the shared function).
        let script = |body: &str| {
            Script::new(&format!(
                "local RETENTION = ARGV[#ARGV]\n{TRANSFER_FN}\n{body}"
            ))
        };
        Self {
            conn,
            prefix: prefix.into(),
            retention_ms: DEFAULT_RETENTION.as_millis() as u64,
            transfer: script(TRANSFER),
            place: script(PLACE_BET),
            settle: script(SETTLE_BET),
            settle_many: script(SETTLE_MANY),
            reject: Script::new(REJECT_BET),
            finish: Script::new(FINISH_ROUND),
            trim: Script::new(TRIM_LOG),
        }
    }

    /// Connect (lazily: Redis may come up later) to `url`.
    pub fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, LedgerError> {
        Ok(Self::new(
            crate::redisx::manager(url).map_err(unavailable)?,
            prefix,
        ))
    }

    /// Keep idempotency keys and final bet records this long (at least 1 ms).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention_ms = (retention.as_millis() as u64).max(1);
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn bet_key(&self, user_id: &str, key: &str) -> String {
        // The length prefix keeps ("a:b","c") and ("a","b:c") apart.
        format!("{}:bet:{}:{user_id}:{key}", self.prefix, user_id.len())
    }

    fn round_key(&self, round_id: &str) -> String {
        format!("{}:round:{round_id}:bets", self.prefix)
    }

    fn closed_key(&self, round_id: &str) -> String {
        format!("{}:round:{round_id}:closed", self.prefix)
    }

    fn room_key(&self, game_id: &str, what: &str) -> String {
        format!("{}:room:{}:{game_id}:{what}", self.prefix, game_id.len())
    }

    /// The keys every money-moving script starts with, in the order the Lua expects: the
    /// balances, the entry sequence and the audit stream.
    fn money_keys(&self) -> [String; 3] {
        [
            self.key("ledger:balances"),
            self.key("ledger:seq"),
            self.key("ledger:log"),
        ]
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Remove the audit entries with `seq <= through` from Redis, once they are kept elsewhere.
    /// Refused for a `through` beyond the last recorded entry (it would drop entries that do
    /// not exist yet from nowhere, and misstate how far the archive goes).
    pub async fn trim_entries(&self, through: u64) -> Result<Trimmed, LedgerError> {
        let (removed, through_now): (i64, u64) = self
            .trim
            .key(self.key("ledger:seq"))
            .key(self.key("ledger:log"))
            .key(self.key("ledger:log:archived"))
            .arg(through)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if removed < 0 {
            return Err(LedgerError::BeyondLog {
                through,
                last: through_now,
            });
        }
        Ok(Trimmed {
            removed: removed as u64,
            archived_through: through_now,
        })
    }
}

/// The result of [`RedisLedger::trim_entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries removed by this call.
    pub removed: u64,
    /// The audit stream holds no entry with a sequence number up to this.
    pub archived_through: u64,
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn balance(&self, account: &str) -> Result<i64, LedgerError> {
        let v: Option<i64> = redis::cmd("HGET")
            .arg(self.key("ledger:balances"))
            .arg(account)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    async fn transfer(&self, t: &Transfer) -> Result<Posted, LedgerError> {
        check_transfer(t)?;
        // Not representable in Lua: refused before it could be rounded there.
        if t.amount > MAX_BALANCE {
            return Err(LedgerError::InvalidAmount(t.amount));
        }
        let mut inv = self.transfer.prepare_invoke();
        let [balances, seq, log] = self.money_keys();
        inv.key(balances)
            .key(format!("{}:ledger:applied:{}", self.prefix, t.key))
            .key(seq)
            .key(log);
        let from_system = super::is_system(&t.from);
        inv.arg(&t.key)
            .arg(kind_str(t.kind))
            .arg(&t.from)
            .arg(&t.to)
            .arg(t.amount)
            .arg(&t.memo)
            .arg(now_ms())
            .arg(if from_system { "1" } else { "0" })
            .arg(MAX_BALANCE)
            .arg(self.retention_ms);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match r.first().map(String::as_str) {
            Some("ok") => Ok(Posted {
                entry: parse_entry(&r[1])?,
                duplicate: false,
            }),
            Some("dup") => {
                let e = parse_entry(&r[1])?;
                if e.from != t.from || e.to != t.to || e.amount != t.amount || e.kind != t.kind {
                    return Err(LedgerError::KeyReused(t.key.clone()));
                }
                Ok(Posted {
                    entry: e,
                    duplicate: true,
                })
            }
            Some("insufficient") => Err(LedgerError::InsufficientBalance {
                account: t.from.clone(),
                balance: num(&r[1], "balance")?,
                needed: t.amount,
            }),
            Some("overflow") => Err(LedgerError::Overflow(r[1].clone())),
            _ => Err(corrupt(format!("transfer script answered {r:?}"))),
        }
    }

    async fn place_bet(&self, w: &Wager) -> Result<Placed, LedgerError> {
        if w.amount <= 0 || w.amount > MAX_BALANCE {
            return Err(LedgerError::InvalidAmount(w.amount));
        }
        let wager = serde_json::to_string(w).map_err(corrupt)?;
        let stake_key = super::memory::stake_key(&w.user_id, &w.key);
        let mut inv = self.place.prepare_invoke();
        for k in self.money_keys() {
            inv.key(k);
        }
        inv.key(self.bet_key(&w.user_id, &w.key))
            .key(self.round_key(&w.round_id))
            .key(self.closed_key(&w.round_id));
        inv.arg(&stake_key)
            .arg(user_account(&w.user_id))
            .arg(w.amount)
            .arg(wager)
            .arg(&w.round_id)
            .arg(now_ms())
            .arg(MAX_BALANCE)
            .arg(HOUSE)
            .arg(self.retention_ms);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        match r.first().map(String::as_str) {
            // The record is the wager as sent, pending: only the balance comes back.
            Some("accepted") => {
                let balance = num(r.get(1).map_or("", String::as_str), "balance")?;
                Ok(Placed::Accepted(BetRecord {
                    wager: w.clone(),
                    state: BetState::Pending { balance },
                }))
            }
            Some("existing") => Ok(Placed::Existing(parse_record(&r[1..])?)),
            Some("insufficient") => Ok(Placed::Insufficient(parse_record(&r[1..])?)),
            Some("closed") => Ok(Placed::RoundClosed),
            Some("overflow") => Err(LedgerError::Overflow(r.get(1).cloned().unwrap_or_default())),
            _ => Err(corrupt(format!("place_bet script answered {r:?}"))),
        }
    }

    async fn settle_bet(
        &self,
        user_id: &str,
        key: &str,
        roll: u32,
        payout: i64,
    ) -> Result<Settlement, LedgerError> {
        check_payout(user_id, payout)?;
        let payout_key = super::memory::payout_key(user_id, key);
        let mut inv = self.settle.prepare_invoke();
        for k in self.money_keys() {
            inv.key(k);
        }
        inv.key(self.bet_key(user_id, key));
        inv.arg(&payout_key)
            .arg(user_account(user_id))
            .arg(payout)
            .arg(roll)
            .arg(now_ms())
            .arg(MAX_BALANCE)
            .arg(HOUSE)
            .arg(self.retention_ms);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        settlement(&r, user_id, key)
    }

    /// One script call for the whole batch: one round trip and one script run instead of one
    /// per bet (settling a round was most of the engines' Redis calls).
    async fn settle_bets(&self, items: &[SettleItem]) -> Vec<Result<Settlement, LedgerError>> {
        let mut out: Vec<Option<Result<Settlement, LedgerError>>> = items
            .iter()
            .map(|i| check_payout(&i.user_id, i.payout).err().map(Err))
            .collect();
        let valid: Vec<&SettleItem> = items
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(i, _)| i)
            .collect();
        if !valid.is_empty() {
            let mut inv = self.settle_many.prepare_invoke();
            for k in self.money_keys() {
                inv.key(k);
            }
            inv.arg(now_ms()).arg(MAX_BALANCE).arg(HOUSE);
            for i in &valid {
                let payout_key = super::memory::payout_key(&i.user_id, &i.key);
                inv.key(self.bet_key(&i.user_id, &i.key));
                inv.arg(payout_key)
                    .arg(user_account(&i.user_id))
                    .arg(i.payout)
                    .arg(i.roll);
            }
            inv.arg(self.retention_ms);
            let replies: Result<Vec<Vec<String>>, LedgerError> = inv
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable);
            let mut replies = match replies {
                Ok(r) if r.len() == valid.len() => r.into_iter().map(Ok).collect::<Vec<_>>(),
                Ok(r) => {
                    let e = corrupt(format!("{} replies for {} bets", r.len(), valid.len()));
                    valid.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => valid.iter().map(|_| Err(e.clone())).collect(),
            }
            .into_iter();
            for (slot, item) in out.iter_mut().filter(|o| o.is_none()).zip(&valid) {
                let reply = replies
                    .next()
                    .unwrap_or_else(|| Err(corrupt("missing reply")));
                *slot = Some(reply.and_then(|r| settlement(&r, &item.user_id, &item.key)));
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(corrupt("bet left unsettled"))))
            .collect()
    }

    async fn reject_bet(&self, w: &Wager, reason: &str) -> Result<BetRecord, LedgerError> {
        let wager = serde_json::to_string(w).map_err(corrupt)?;
        let r: Vec<String> = self
            .reject
            .key(self.bet_key(&w.user_id, &w.key))
            .arg(wager)
            .arg(reason)
            .arg(self.retention_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        parse_record(&r)
    }

    async fn bet(&self, user_id: &str, key: &str) -> Result<Option<BetRecord>, LedgerError> {
        let fields: Vec<String> = redis::cmd("HGETALL")
            .arg(self.bet_key(user_id, key))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_record(&fields).map(Some)
    }

    async fn round_bets(&self, round_id: &str) -> Result<Vec<BetRecord>, LedgerError> {
        let keys: Vec<String> = redis::cmd("LRANGE")
            .arg(self.round_key(round_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HGETALL").arg(k);
        }
        let all: Vec<Vec<String>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        all.iter().map(|f| parse_record(f)).collect()
    }

    async fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        let start = format!("{}-0", after.saturating_add(1));
        let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.key("ledger:log"))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        rows.iter()
            .filter_map(|(_, fields)| fields.iter().find(|(k, _)| k == "entry"))
            .map(|(_, v)| parse_entry(v))
            .collect()
    }

    async fn archived_through(&self) -> Result<u64, LedgerError> {
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.key("ledger:log:archived"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    async fn accounts(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let mut all: Vec<(String, i64)> = redis::cmd("HGETALL")
            .arg(self.key("ledger:balances"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        all.sort();
        Ok(all)
    }

    async fn next_nonce(&self, game_id: &str) -> Result<u64, LedgerError> {
        redis::cmd("INCR")
            .arg(self.room_key(game_id, "nonce"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn open_round(&self, round: &RoundState) -> Result<(), LedgerError> {
        let json = serde_json::to_string(round).map_err(corrupt)?;
        redis::cmd("SET")
            .arg(self.room_key(&round.game_id, "round"))
            .arg(json)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn current_round(&self, game_id: &str) -> Result<Option<RoundState>, LedgerError> {
        let v: Option<String> = redis::cmd("GET")
            .arg(self.room_key(game_id, "round"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        v.map(|j| serde_json::from_str(&j).map_err(corrupt))
            .transpose()
    }

    async fn close_round(&self, round_id: &str) -> Result<(), LedgerError> {
        // Kept a day: long enough that no stalled engine can still be placing into the round.
        redis::cmd("SET")
            .arg(self.closed_key(round_id))
            .arg(1)
            .arg("EX")
            .arg(86_400)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn finish_round(&self, game_id: &str, round_id: &str) -> Result<(), LedgerError> {
        // The round's list of bets is only needed while it settles.
        self.finish
            .key(self.room_key(game_id, "round"))
            .key(self.round_key(round_id))
            .arg(round_id)
            .arg(self.retention_ms)
            .invoke_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }
}
