//! Ledger in Redis. Each operation is one Lua script, so the idempotency check, the balance
//! check, the debit and the entry record happen atomically on the server (no client-side locks
//! that could expire mid-operation). Every entry is also appended to a Redis stream
//! (`<prefix>:ledger:log`, id `<seq>-1`) for audit and dispute resolution.
//!
//! Keys (prefix `gf` by default): `ledger:balances` (hash account → balance),
//! `ledger:applied:<transfer key>` (the entry a deposit's or withdrawal's key produced; a bet's
//! stake and payout are keyed by its bet record instead), `ledger:seq`, `ledger:log`
//! (stream), `bet:<len(user)>:<user>:<key>` (hash: one bet record), `round:<roundId>:bets`
//! (list), `room:<len>:<gameId>:epoch` (the room's owner epoch, see [`super::Fence`]),
//! `ledger:identity` (the marker of this ledger's data, see [`super::durability`]).
//!
//! Every script checks everything before its first write: the identity marker, the caller's
//! room fence, the balances, and the audit stream taking the next entry. A refusal or an error
//! therefore leaves Redis exactly as it was, and a retry can never apply half an operation twice.
//!
//! Idempotency keys are kept for a retention period (default 24 h, like payment APIs): within
//! it a repeated key gets its first outcome, after it the key may be used afresh. A transfer's
//! key expires that long after it was applied; a bet record that long after its outcome became
//! final (a pending bet never expires, so it is always settled). The audit stream keeps every
//! entry until it is archived (`gameserver ledger-archive`, [`super::archive`]), which trims the
//! archived entries and records how far (`ledger:log:archived`).
//!
//! Lua numbers are doubles, so balances are limited to ±(2^53 − 1) minor units here; larger
//! movements are refused as overflow rather than rounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::{Script, ScriptInvocation};

use crate::clock::now_ms;
use crate::redisx::Conn;

use super::accounts::{is_system, user_account, HOUSE};
use super::check::{check_transfer, MAX_AMOUNT};
use super::error::LedgerError;
use super::keys::{payout_key, stake_key};
use super::layout::{Layout, DEFAULT_CLUSTER_SHARDS};
use super::reply::{corrupt, kind_str, parse_entry, parse_record, settlement, Reply, Tag};
use super::store::Ledger;
use super::types::{
    BetRecord, BetState, Entry, Fence, Placed, Posted, RoundState, SettleItem, Settlement,
    Transfer, Wager,
};

/// Largest balance magnitude representable exactly in Redis Lua.
pub const MAX_BALANCE: i64 = MAX_AMOUNT;

/// Shared by every money and room script. Fixed keys and arguments come first:
/// KEYS[1] balances, KEYS[2] the entry sequence, KEYS[3] the audit stream, KEYS[4] the ledger's
/// identity marker, KEYS[5] the room's owner epoch; ARGV[1] the retention (ms), ARGV[2] the
/// identity this process runs on ('' skips the check), ARGV[3] the caller's epoch for the room
/// ('' for writes that belong to no room). Script-specific keys start at KEYS[6], arguments at
/// ARGV[4].
///
/// Every script does all its checks before its first write, so a refusal or an error leaves
/// Redis unchanged (Redis keeps the writes a script made before it fails).
const PRELUDE: &str = include_str!("lua/prelude.lua");

/// KEYS[6]: the key's applied record. ARGV[4..]: key, kind, from, to, amount, memo, now,
/// from_system ('1'/'0'), max.
const TRANSFER: &str = include_str!("lua/transfer.lua");

/// KEYS[6..8]: the bet record, the round's bet list, the round's closed marker. ARGV[4..]:
/// stake key, account, amount, wager JSON, round id, now, max, house. The bet record is the
/// stake's idempotency record: it is written in the same step as the debit.
const PLACE_BET: &str = include_str!("lua/place_bet.lua");

/// KEYS[6]: the bet record. ARGV[4..]: payout key, account, payout, roll, now, max, house.
const SETTLE_BET: &str = include_str!("lua/settle_bet.lua");

/// KEYS[6..]: each bet's record. ARGV[4..6]: now, max, house, then per bet its payout key,
/// account, payout and roll. Answers 'ok' followed by one reply per bet. A losing bet's
/// settlement writes no entry, so the audit stream is checked once up front: with `seq` behind
/// the log, no bet of the batch is settled (not the losses before the first payout either).
const SETTLE_MANY: &str = include_str!("lua/settle_many.lua");

/// KEYS[6]: the bet record. ARGV[4..]: wager JSON, reason.
const REJECT_BET: &str = include_str!("lua/reject_bet.lua");

/// Raises the room's owner epoch (KEYS[5]).
const CLAIM_ROOM: &str = include_str!("lua/claim_room.lua");

/// Raises a shard's copy of the room's epoch (KEYS[5]) to ARGV[4] (never lowers it): the fence
/// of the room's bets in the shards other than the room's own.
const RAISE_EPOCH: &str = include_str!("lua/raise_epoch.lua");

/// KEYS[6]: the room's nonce counter. Fenced like every room write: on a forgotten ledger a
/// counter starting again at 1 would repeat round ids and fairness nonces. Each round keeps
/// the room's keys for another [`ROOM_IDLE`].
const NEXT_NONCE: &str = include_str!("lua/next_nonce.lua");

/// How long a room's epoch and nonce outlive its last round (`ROOM_IDLE_MS` in the scripts).
pub const ROOM_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a rejected bet's record answers retries (at most; `REJECTED_RETENTION`).
pub const REJECTED_RETENTION: Duration = Duration::from_secs(600);

/// KEYS[6]: the room's open round. ARGV[4..]: the round JSON, its id. A round that is not
/// finished is never replaced by another.
const OPEN_ROUND: &str = include_str!("lua/open_round.lua");

/// KEYS[6]: the round's closed marker, kept a day: long enough that no stalled engine can
/// still be placing into the round.
const CLOSE_ROUND: &str = include_str!("lua/close_round.lua");

/// KEYS[6..7]: the room's open round, the round's bet list (only needed while it settles).
/// ARGV[4]: the round id.
const FINISH_ROUND: &str = include_str!("lua/finish_round.lua");

/// Drop audit entries up to a sequence number that is already recorded (never ahead of the
/// log) and remember the highest one dropped. KEYS: the sequence, the audit stream, the
/// archived-through marker.
const TRIM_LOG: &str = include_str!("lua/trim_log.lua");

/// How long idempotency keys and final bet records are kept unless configured.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

pub struct RedisLedger {
    conn: Conn,
    layout: Layout,
    retention_ms: u64,
    /// The identity marker's value every script requires (unset: no check).
    identity: OnceLock<String>,
    /// `sync` waits with `WAITAOF` (Redis 7.2 and later, with AOF on).
    waitaof: AtomicBool,
    transfer: Script,
    place: Script,
    settle: Script,
    settle_many: Script,
    reject: Script,
    claim: Script,
    raise: Script,
    nonce: Script,
    open: Script,
    close: Script,
    finish: Script,
    trim: Script,
}

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
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

impl RedisLedger {
    /// `prefix` namespaces every key (several fleets may share one Redis). On a cluster
    /// connection the keys are spread over [`DEFAULT_CLUSTER_SHARDS`] hash-tagged shards.
    pub fn new(conn: Conn, prefix: impl Into<String>) -> Self {
        let layout = if conn.is_cluster() {
            Layout::sharded(prefix, DEFAULT_CLUSTER_SHARDS)
        } else {
            Layout::single(prefix)
        };
        Self::with_layout(conn, layout)
    }

    /// Keys placed by `layout` (one shard: a single Redis).
    pub fn with_layout(conn: Conn, layout: Layout) -> Self {
        let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            conn,
            layout,
            retention_ms: DEFAULT_RETENTION.as_millis() as u64,
            identity: OnceLock::new(),
            waitaof: AtomicBool::new(false),
            transfer: script(TRANSFER),
            place: script(PLACE_BET),
            settle: script(SETTLE_BET),
            settle_many: script(SETTLE_MANY),
            reject: script(REJECT_BET),
            claim: script(CLAIM_ROOM),
            raise: script(RAISE_EPOCH),
            nonce: script(NEXT_NONCE),
            open: script(OPEN_ROUND),
            close: script(CLOSE_ROUND),
            finish: script(FINISH_ROUND),
            trim: Script::new(TRIM_LOG),
        }
    }

    /// Every write from now on requires the ledger's identity marker to hold `identity`
    /// (see [`super::durability`]): on a Redis that lost or replaced its data nothing is
    /// written, and the caller learns it as [`LedgerError::IdentityLost`].
    /// Set once (by the engine's start-up check); later calls change nothing.
    pub fn require_identity(&self, identity: impl Into<String>) {
        let _ = self.identity.set(identity.into());
    }

    fn identity(&self) -> &str {
        self.identity.get().map_or("", String::as_str)
    }

    /// `sync` waits for the local AOF fsync with `WAITAOF` (the server must have it).
    pub fn use_waitaof(&self, on: bool) {
        self.waitaof.store(on, Ordering::Release);
    }

    /// The name of the identity marker key (of the first shard; every shard has one).
    pub fn identity_key(&self) -> String {
        self.shard_identity_key(0)
    }

    pub(super) fn shard_identity_key(&self, shard: u16) -> String {
        self.layout.key(shard, "ledger:identity")
    }

    /// The key layout (shards) this ledger uses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A script call in `shard` with the fixed keys and arguments of [`PRELUDE`] filled in.
    fn invocation<'a>(
        &self,
        script: &'a Script,
        shard: u16,
        fence: Option<&Fence>,
    ) -> ScriptInvocation<'a> {
        self.prelude(
            script,
            shard,
            fence.map(|f| f.game_id.as_str()),
            fence.map(|f| f.epoch),
        )
    }

    /// [`PRELUDE`]'s keys and arguments in `shard`: `room` names the epoch key (the shard's
    /// copy of it), `epoch` (if any) is checked against it.
    fn prelude<'a>(
        &self,
        script: &'a Script,
        shard: u16,
        room: Option<&str>,
        epoch: Option<u64>,
    ) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        let [balances, seq, log] = self.money_keys(shard);
        let identity = self.shard_identity_key(shard);
        inv.key(balances).key(seq).key(log).key(&identity);
        match room {
            Some(game_id) => inv.key(self.epoch_key(shard, game_id)),
            // Never read: ARGV[3] is empty.
            None => inv.key(identity),
        };
        inv.arg(self.retention_ms)
            .arg(self.identity())
            .arg(epoch.map(|e| e.to_string()).unwrap_or_default());
        inv
    }

    /// Runs a script whose answer is a tag and strings; the guard's refusals become errors
    /// here.
    async fn call(
        &self,
        inv: &ScriptInvocation<'_>,
        fence: Option<&Fence>,
    ) -> Result<Reply, LedgerError> {
        let v: redis::Value = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let r = Reply::parse(v)?;
        self.refusal(&r, fence)?;
        Ok(r)
    }

    /// The refusals any script may answer with instead of its own reply.
    fn refusal(&self, r: &Reply, fence: Option<&Fence>) -> Result<(), LedgerError> {
        match (r.tag, fence) {
            (Tag::Identity, _) => Err(LedgerError::IdentityLost(format!(
                "{} no longer holds {:?}",
                self.identity_key(),
                self.identity()
            ))),
            (Tag::Stale, Some(f)) => Err(LedgerError::StaleOwner {
                game_id: f.game_id.clone(),
                epoch: f.epoch,
                current: r.number(0, "epoch").unwrap_or(0),
            }),
            (Tag::Log, _) => Err(r.log_refused()),
            _ => Ok(()),
        }
    }

    /// Connect (lazily: Redis may come up later) to `url`: a single Redis, or a Redis Cluster
    /// for a `redis+cluster://` URL.
    pub fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, LedgerError> {
        Ok(Self::new(
            crate::redisx::connect(url).map_err(unavailable)?,
            prefix,
        ))
    }

    /// Keep idempotency keys and final bet records this long (at least 1 ms).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention_ms = (retention.as_millis() as u64).max(1);
        self
    }

    fn key(&self, shard: u16, name: &str) -> String {
        self.layout.key(shard, name)
    }

    /// A bet record, in its player's shard.
    fn bet_key(&self, user_id: &str, key: &str) -> String {
        // The length prefix keeps ("a:b","c") and ("a","b:c") apart.
        self.key(
            self.layout.user_shard(user_id),
            &format!("bet:{}:{user_id}:{key}", user_id.len()),
        )
    }

    fn round_key(&self, shard: u16, round_id: &str) -> String {
        self.key(shard, &format!("round:{round_id}:bets"))
    }

    fn closed_key(&self, shard: u16, round_id: &str) -> String {
        self.key(shard, &format!("round:{round_id}:closed"))
    }

    /// A key of the room itself, in the room's shard.
    fn room_key(&self, game_id: &str, what: &str) -> String {
        self.room_key_in(self.layout.room_shard(game_id), game_id, what)
    }

    fn room_key_in(&self, shard: u16, game_id: &str, what: &str) -> String {
        self.key(shard, &format!("room:{}:{game_id}:{what}", game_id.len()))
    }

    /// The room's owner epoch as `shard` holds it: the counter itself in the room's shard, a
    /// copy raised by [`Ledger::claim_room`] in the others.
    fn epoch_key(&self, shard: u16, game_id: &str) -> String {
        self.room_key_in(shard, game_id, "epoch")
    }

    /// The keys every money-moving script starts with, in the order the Lua expects: the
    /// balances, the entry sequence and the audit stream.
    fn money_keys(&self, shard: u16) -> [String; 3] {
        [
            self.key(shard, "ledger:balances"),
            self.key(shard, "ledger:seq"),
            self.key(shard, "ledger:log"),
        ]
    }

    /// The shard a transfer moves money in: its player's (a system account has a sub-account
    /// in every shard). Two players in different shards cannot be moved between atomically.
    fn transfer_shard(&self, t: &Transfer) -> Result<u16, LedgerError> {
        match (
            self.layout.account_shard(&t.from),
            self.layout.account_shard(&t.to),
        ) {
            (Some(a), Some(b)) if a != b => Err(LedgerError::CrossShard {
                from: t.from.clone(),
                to: t.to.clone(),
            }),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Ok(0),
        }
    }

    /// `account` as stored in `shard` (a system account's sub-account there).
    fn stored(&self, account: &str, shard: u16) -> String {
        if is_system(account) {
            self.layout.sub_account(account, shard)
        } else {
            account.to_owned()
        }
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// A handle on the ledger's connection (for the durability checks).
    pub(super) fn connection(&self) -> Conn {
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

    /// Remove the audit entries with `seq <= through` from Redis, once they are kept elsewhere
    /// (a single Redis: the one audit stream; see [`trim_shard_entries`](Self::trim_shard_entries)).
    pub async fn trim_entries(&self, through: u64) -> Result<Trimmed, LedgerError> {
        self.trim_shard_entries(0, through).await
    }

    /// [`trim_entries`](Self::trim_entries) on one shard's audit stream (sequence numbers count
    /// per shard). Refused for a `through` beyond the shard's last recorded entry (it would
    /// drop entries that do not exist yet from nowhere, and misstate how far the archive goes).
    pub async fn trim_shard_entries(
        &self,
        shard: u16,
        through: u64,
    ) -> Result<Trimmed, LedgerError> {
        self.known_shard(shard)?;
        let (removed, through_now): (i64, u64) = self
            .trim
            .key(self.key(shard, "ledger:seq"))
            .key(self.key(shard, "ledger:log"))
            .key(self.key(shard, "ledger:log:archived"))
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

    /// How far one shard's audit stream was archived (0: not at all).
    pub async fn shard_archived_through(&self, shard: u16) -> Result<u64, LedgerError> {
        self.known_shard(shard)?;
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.key(shard, "ledger:log:archived"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    /// One shard's audit entries with `seq > after`, oldest first, at most `limit`.
    pub async fn shard_log(
        &self,
        shard: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LedgerError> {
        self.known_shard(shard)?;
        self.shard_entries(shard, after, limit).await
    }

    /// How many audit streams (shards) the ledger has: 1 on a single Redis.
    pub fn shard_count(&self) -> u16 {
        self.layout.shards()
    }

    fn known_shard(&self, shard: u16) -> Result<(), LedgerError> {
        if shard >= self.layout.shards() {
            return Err(LedgerError::Unsupported(format!(
                "shard {shard}: the ledger has {} shard(s)",
                self.layout.shards()
            )));
        }
        Ok(())
    }

    /// Runs `f` on every shard at once; the first error wins.
    async fn each_shard<T, F, Fut>(&self, f: F) -> Result<Vec<T>, LedgerError>
    where
        F: Fn(u16) -> Fut,
        Fut: std::future::Future<Output = Result<T, LedgerError>>,
    {
        futures_util::future::join_all(self.layout.all().map(f))
            .await
            .into_iter()
            .collect()
    }

    /// One shard's balances, system sub-accounts as stored.
    async fn shard_accounts(&self, shard: u16) -> Result<Vec<(String, i64)>, LedgerError> {
        redis::cmd("HGETALL")
            .arg(self.key(shard, "ledger:balances"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn shard_entries(
        &self,
        shard: u16,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, LedgerError> {
        let start = format!("{}-0", after.saturating_add(1));
        let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(self.key(shard, "ledger:log"))
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
            .map(|(_, v)| parse_entry(v, shard))
            .collect()
    }

    /// One shard's part of a round: its bet list, then each record.
    async fn shard_round_bets(
        &self,
        shard: u16,
        round_id: &str,
    ) -> Result<Vec<BetRecord>, LedgerError> {
        let keys: Vec<String> = redis::cmd("LRANGE")
            .arg(self.round_key(shard, round_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // The records are in the list's shard (one slot), so one pipeline reaches them all.
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

    /// Settles the bets of one shard in one script call.
    async fn settle_in_shard(
        &self,
        fence: &Fence,
        shard: u16,
        items: &[&SettleItem],
    ) -> Vec<Result<Settlement, LedgerError>> {
        let mut inv = self.invocation(&self.settle_many, shard, Some(fence));
        inv.arg(now_ms())
            .arg(MAX_BALANCE)
            .arg(self.stored(HOUSE, shard));
        for i in items {
            let payout_key = payout_key(&i.user_id, &i.key);
            inv.key(self.bet_key(&i.user_id, &i.key));
            inv.arg(payout_key)
                .arg(user_account(&i.user_id))
                .arg(i.payout)
                .arg(i.roll);
        }
        match self.settle_replies(&inv, fence, items.len()).await {
            Ok(replies) => replies
                .iter()
                .zip(items)
                .map(|(r, i)| settlement(r, &i.user_id, &i.key))
                .collect(),
            Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
        }
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
    /// A system account's balance is the sum of its sub-accounts in every shard.
    async fn balance(&self, account: &str) -> Result<i64, LedgerError> {
        let balance_in = |shard: u16| async move {
            let v: Option<i64> = redis::cmd("HGET")
                .arg(self.key(shard, "ledger:balances"))
                .arg(self.stored(account, shard))
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?;
            Ok(v.unwrap_or(0))
        };
        match self.layout.account_shard(account) {
            Some(shard) => balance_in(shard).await,
            None => Ok(self.each_shard(balance_in).await?.into_iter().sum()),
        }
    }

    async fn transfer(&self, t: &Transfer) -> Result<Posted, LedgerError> {
        check_transfer(t)?;
        // Not representable in Lua: refused before it could be rounded there.
        if t.amount > MAX_BALANCE {
            return Err(LedgerError::InvalidAmount(t.amount));
        }
        let shard = self.transfer_shard(t)?;
        let (from, to) = (self.stored(&t.from, shard), self.stored(&t.to, shard));
        let mut inv = self.invocation(&self.transfer, shard, None);
        inv.key(self.key(shard, &format!("ledger:applied:{}", t.key)));
        let from_system = is_system(&t.from);
        inv.arg(&t.key)
            .arg(kind_str(t.kind))
            .arg(&from)
            .arg(&to)
            .arg(t.amount)
            .arg(&t.memo)
            .arg(now_ms())
            .arg(if from_system { "1" } else { "0" })
            .arg(MAX_BALANCE);
        let r = self.call(&inv, None).await?;
        match r.tag {
            Tag::Ok => Ok(Posted {
                entry: parse_entry(r.field(0, "entry")?, shard)?,
                duplicate: false,
            }),
            Tag::Dup => {
                let e = parse_entry(r.field(0, "entry")?, shard)?;
                if e.from != from || e.to != to || e.amount != t.amount || e.kind != t.kind {
                    return Err(LedgerError::KeyReused(t.key.clone()));
                }
                Ok(Posted {
                    entry: e,
                    duplicate: true,
                })
            }
            Tag::Insufficient => Err(LedgerError::InsufficientBalance {
                account: t.from.clone(),
                balance: r.number(0, "balance")?,
                needed: t.amount,
            }),
            Tag::Overflow => Err(LedgerError::Overflow(r.field(0, "account")?.to_owned())),
            _ => Err(r.unexpected("transfer")),
        }
    }

    /// Raises the epoch in the room's shard, then its copy in every other shard: once this
    /// returns, no earlier owner can write to any shard.
    async fn claim_room(&self, game_id: &str) -> Result<Fence, LedgerError> {
        let fence = Fence {
            game_id: game_id.to_owned(),
            epoch: 0,
        };
        let home = self.layout.room_shard(game_id);
        // The room's epoch key, without a staleness check: this raises it.
        let inv = self.prelude(&self.claim, home, Some(game_id), None);
        let r = self.call(&inv, Some(&fence)).await?;
        let epoch: u64 = match r.tag {
            Tag::Ok => r.number(0, "epoch")?,
            _ => return Err(r.unexpected("claim")),
        };
        let fence = &fence;
        self.each_shard(|shard| async move {
            if shard == home {
                return Ok(());
            }
            let mut inv = self.prelude(&self.raise, shard, Some(game_id), None);
            inv.arg(epoch);
            self.call(&inv, Some(fence)).await.map(|_| ())
        })
        .await?;
        Ok(Fence {
            epoch,
            game_id: game_id.to_owned(),
        })
    }

    async fn place_bet(&self, fence: &Fence, w: &Wager) -> Result<Placed, LedgerError> {
        if w.amount <= 0 || w.amount > MAX_BALANCE {
            return Err(LedgerError::InvalidAmount(w.amount));
        }
        let wager = serde_json::to_string(w).map_err(corrupt)?;
        let stake_key = stake_key(&w.user_id, &w.key);
        let shard = self.layout.user_shard(&w.user_id);
        let mut inv = self.invocation(&self.place, shard, Some(fence));
        inv.key(self.bet_key(&w.user_id, &w.key))
            .key(self.round_key(shard, &w.round_id))
            .key(self.closed_key(shard, &w.round_id));
        inv.arg(&stake_key)
            .arg(user_account(&w.user_id))
            .arg(w.amount)
            .arg(wager)
            .arg(&w.round_id)
            .arg(now_ms())
            .arg(MAX_BALANCE)
            .arg(self.stored(HOUSE, shard));
        let r = self.call(&inv, Some(fence)).await?;
        match r.tag {
            // The record is the wager as sent, pending: only the balance comes back.
            Tag::Accepted => Ok(Placed::Accepted(BetRecord {
                wager: w.clone(),
                state: BetState::Pending {
                    balance: r.number(0, "balance")?,
                },
            })),
            Tag::Existing => Ok(Placed::Existing(r.record()?)),
            Tag::Insufficient => Ok(Placed::Insufficient(r.record()?)),
            Tag::Closed => Ok(Placed::RoundClosed),
            Tag::Overflow => Err(LedgerError::Overflow(r.field(0, "account")?.to_owned())),
            _ => Err(r.unexpected("place_bet")),
        }
    }

    async fn settle_bet(
        &self,
        fence: &Fence,
        user_id: &str,
        key: &str,
        roll: u32,
        payout: i64,
    ) -> Result<Settlement, LedgerError> {
        check_payout(user_id, payout)?;
        let payout_key = payout_key(user_id, key);
        let shard = self.layout.user_shard(user_id);
        let mut inv = self.invocation(&self.settle, shard, Some(fence));
        inv.key(self.bet_key(user_id, key));
        inv.arg(&payout_key)
            .arg(user_account(user_id))
            .arg(payout)
            .arg(roll)
            .arg(now_ms())
            .arg(MAX_BALANCE)
            .arg(self.stored(HOUSE, shard));
        let r = self.call(&inv, Some(fence)).await?;
        settlement(&r, user_id, key)
    }

    /// One script call per shard for the whole batch: one round trip and one script run
    /// instead of one per bet (settling a round was most of the engines' Redis calls).
    async fn settle_bets(
        &self,
        fence: &Fence,
        items: &[SettleItem],
    ) -> Vec<Result<Settlement, LedgerError>> {
        let mut out: Vec<Option<Result<Settlement, LedgerError>>> = items
            .iter()
            .map(|i| check_payout(&i.user_id, i.payout).err().map(Err))
            .collect();
        let mut by_shard: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (n, item) in items.iter().enumerate() {
            if out[n].is_none() {
                by_shard
                    .entry(self.layout.user_shard(&item.user_id))
                    .or_default()
                    .push(n);
            }
        }
        let batches = by_shard.iter().map(|(&shard, idx)| async move {
            let batch: Vec<&SettleItem> = idx.iter().map(|&n| &items[n]).collect();
            (idx, self.settle_in_shard(fence, shard, &batch).await)
        });
        for (idx, results) in futures_util::future::join_all(batches).await {
            for (&n, r) in idx.iter().zip(results) {
                out[n] = Some(r);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err(corrupt("bet left unsettled"))))
            .collect()
    }

    async fn reject_bet(
        &self,
        fence: &Fence,
        w: &Wager,
        reason: &str,
    ) -> Result<BetRecord, LedgerError> {
        let wager = serde_json::to_string(w).map_err(corrupt)?;
        let shard = self.layout.user_shard(&w.user_id);
        let mut inv = self.invocation(&self.reject, shard, Some(fence));
        inv.key(self.bet_key(&w.user_id, &w.key));
        inv.arg(wager).arg(reason);
        let r = self.call(&inv, Some(fence)).await?;
        match r.tag {
            Tag::Ok => r.record(),
            _ => Err(r.unexpected("reject")),
        }
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
        let parts = self
            .each_shard(|shard| self.shard_round_bets(shard, round_id))
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Every shard's entries with a sequence number above `after` (numbers are per shard on a
    /// sharded ledger), ordered by number, then shard.
    async fn entries(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        let parts = self
            .each_shard(|shard| self.shard_entries(shard, after, limit))
            .await?;
        let mut all: Vec<Entry> = parts.into_iter().flatten().collect();
        all.sort_by_key(|e| (e.seq, e.shard));
        all.truncate(limit);
        Ok(all)
    }

    /// On a sharded ledger the lowest shard's mark: entries up to it are archived in every
    /// shard (each shard's own mark: [`RedisLedger::shard_archived_through`]).
    async fn archived_through(&self) -> Result<u64, LedgerError> {
        let marks = self
            .each_shard(|shard| self.shard_archived_through(shard))
            .await?;
        Ok(marks.into_iter().min().unwrap_or(0))
    }

    /// Every account as stored: on a sharded ledger a system account appears as its
    /// sub-accounts (`house:s0`, …), which sum to its balance.
    async fn accounts(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let parts = self.each_shard(|shard| self.shard_accounts(shard)).await?;
        let mut all: Vec<(String, i64)> = parts.into_iter().flatten().collect();
        all.sort();
        Ok(all)
    }

    async fn next_nonce(&self, fence: &Fence) -> Result<u64, LedgerError> {
        let shard = self.layout.room_shard(&fence.game_id);
        let mut inv = self.invocation(&self.nonce, shard, Some(fence));
        inv.key(self.room_key(&fence.game_id, "nonce"));
        let r = self.call(&inv, Some(fence)).await?;
        match r.tag {
            Tag::Ok => r.number(0, "nonce"),
            _ => Err(r.unexpected("next_nonce")),
        }
    }

    async fn open_round(&self, fence: &Fence, round: &RoundState) -> Result<(), LedgerError> {
        let json = serde_json::to_string(round).map_err(corrupt)?;
        let shard = self.layout.room_shard(&fence.game_id);
        let mut inv = self.invocation(&self.open, shard, Some(fence));
        inv.key(self.room_key(&fence.game_id, "round"));
        inv.arg(json).arg(&round.round_id);
        let r = self.call(&inv, Some(fence)).await?;
        match r.tag {
            Tag::Ok => Ok(()),
            Tag::Open => Err(LedgerError::RoundOpen(r.field(0, "round id")?.to_owned())),
            _ => Err(r.unexpected("open_round")),
        }
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

    /// Closed in every shard a bet of the round may land in.
    async fn close_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        self.each_shard(|shard| async move {
            let mut inv = self.invocation(&self.close, shard, Some(fence));
            inv.key(self.closed_key(shard, round_id));
            self.call(&inv, Some(fence)).await.map(|_| ())
        })
        .await
        .map(|_| ())
    }

    async fn finish_round(&self, fence: &Fence, round_id: &str) -> Result<(), LedgerError> {
        let home = self.layout.room_shard(&fence.game_id);
        // The other shards' bet lists first: the open round (in the room's shard) goes last,
        // so a retry after a failure finds it still open and finishes again.
        self.each_shard(|shard| async move {
            if shard == home {
                return Ok(());
            }
            let mut inv = self.invocation(&self.finish, shard, Some(fence));
            // No open round in this shard: a key that never holds one.
            inv.key(self.room_key_in(shard, &fence.game_id, "round"))
                .key(self.round_key(shard, round_id));
            inv.arg(round_id);
            self.call(&inv, Some(fence)).await.map(|_| ())
        })
        .await?;
        let mut inv = self.invocation(&self.finish, home, Some(fence));
        inv.key(self.room_key(&fence.game_id, "round"))
            .key(self.round_key(home, round_id));
        inv.arg(round_id);
        self.call(&inv, Some(fence)).await.map(|_| ())
    }

    async fn check_identity(&self) -> Result<(), LedgerError> {
        let Some(expected) = self.identity.get() else {
            return Ok(());
        };
        for (shard, found) in self.shard_identities().await?.into_iter().enumerate() {
            if found.as_ref() != Some(expected) {
                return Err(LedgerError::IdentityLost(format!(
                    "{} holds {found:?}, this engine started on {expected:?}",
                    self.shard_identity_key(shard as u16),
                )));
            }
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), LedgerError> {
        if !self.waitaof.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.layout.is_sharded() {
            // WAITAOF answers for the connection it runs on; a cluster connection's writes went
            // to several nodes, so each shard's node is asked (by a key of the shard).
            return self
                .each_shard(|shard| self.waitaof_on(Some(shard)))
                .await
                .map(|_| ());
        }
        self.waitaof_on(None).await
    }
}

impl RedisLedger {
    /// `WAITAOF 1 0 1000` on the node of `shard` (or the single Redis): this connection's
    /// writes so far are fsynced by that node itself, at most a second.
    async fn waitaof_on(&self, shard: Option<u16>) -> Result<(), LedgerError> {
        let cmd = {
            let mut c = redis::cmd("WAITAOF");
            c.arg(1).arg(0).arg(1_000);
            c
        };
        let reply: (i64, i64) = self.query_on(shard, &cmd).await?;
        if reply.0 < 1 {
            return Err(LedgerError::Unavailable(
                "the ledger's AOF was not fsynced within 1 s".into(),
            ));
        }
        Ok(())
    }

    /// Runs `cmd` on the node that holds `shard` (on a cluster; elsewhere on the one Redis).
    pub(super) async fn query_on<T: redis::FromRedisValue>(
        &self,
        shard: Option<u16>,
        cmd: &redis::Cmd,
    ) -> Result<T, LedgerError> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        match (shard, &self.conn) {
            (Some(shard), Conn::Cluster(c)) => {
                let slot = super::layout::cluster_slot(&self.key(shard, "ledger:seq"));
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot, SlotAddr::Master),
                ));
                let v = c
                    .clone()
                    .route_command(cmd.clone(), route)
                    .await
                    .map_err(unavailable)?;
                redis::from_redis_value(v).map_err(corrupt)
            }
            _ => cmd.query_async(&mut self.conn()).await.map_err(unavailable),
        }
    }

    /// Every shard's identity marker, in shard order.
    pub(super) async fn shard_identities(&self) -> Result<Vec<Option<String>>, LedgerError> {
        self.each_shard(|shard| async move {
            redis::cmd("GET")
                .arg(self.shard_identity_key(shard))
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// Runs the batch settle script: one reply per bet, or the guard's refusal for all.
    async fn settle_replies(
        &self,
        inv: &ScriptInvocation<'_>,
        fence: &Fence,
        n: usize,
    ) -> Result<Vec<Reply>, LedgerError> {
        let v: redis::Value = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let redis::Value::Array(mut items) = v else {
            return Err(corrupt(format!("settle script answered {v:?}")));
        };
        // 'ok' and one reply per bet, or a refusal's flat reply.
        let head: Option<String> = items
            .first()
            .and_then(|h| redis::from_redis_value_ref(h).ok());
        let nested = head.as_deref() == Some("ok")
            && items.len() > 1
            && matches!(items[1], redis::Value::Array(_));
        if !nested {
            let r = Reply::parse(redis::Value::Array(items))?;
            self.refusal(&r, Some(fence))?;
            return Err(r.unexpected("settle_many"));
        }
        let replies = items
            .drain(1..)
            .map(Reply::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if replies.len() != n {
            return Err(corrupt(format!("{} replies for {n} bets", replies.len())));
        }
        Ok(replies)
    }
}
