//! One room's round loop: open (publish the commitment) → take bets until the window closes →
//! roll → settle every bet → pause → next round. Bets that arrive during the pause join the
//! next round.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::{Delivery, MarkedNotice, QueuedBet, Target};
use crate::game::fairness::{self, ClientSeedMix};
use crate::game::rules::{check_amount, Selection};
use crate::ledger::{
    user_account, BetRecord, BetState, EntryKind, Fence, LedgerError, Placed, RoundState,
    SettleItem, Settlement, Transfer, Wager, MAX_AMOUNT, TREASURY,
};
use crate::protocol::BetRejectReason;

use crate::clock::now_ms;

use super::frames::{self, Reveal, RoundInfo, RoundTotals};
use super::phase;
use super::shared::Shared;

/// How long after its betting closed a round may still be settling on its previous owner.
const RECOVERY_GRACE: Duration = Duration::from_secs(2);

/// Bets of one round settled per ledger call. Small enough that one call keeps a shared Redis
/// busy for well under a millisecond: a script runs alone, and every gateway's bet intake
/// (the acknowledgement path) waits behind it.
const SETTLE_BATCH: usize = 16;

/// A round that is taking bets.
struct OpenRound {
    info: RoundInfo,
    server_seed: String,
    accepted: usize,
}

impl OpenRound {
    fn from_state(r: RoundState) -> Self {
        Self {
            info: RoundInfo {
                game_id: r.game_id,
                round_id: r.round_id,
                nonce: r.nonce,
                commitment: r.commitment,
                betting_opens_at: r.betting_opens_at,
                betting_closes_at: r.betting_closes_at,
            },
            server_seed: r.server_seed,
            accepted: 0,
        }
    }
}

/// Why a room task stops before its work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The engine is shutting down (a ledger call kept failing meanwhile).
    Shutdown,
    /// Another engine claimed the room in the ledger: nothing more may be written from here.
    Stale,
    /// The ledger lost its identity: the engine halts.
    Halted,
}

/// What a refusal from the ledger means for the room, if it means it must stop.
fn stop_for(shared: &Shared, e: &LedgerError) -> Option<Stop> {
    match e {
        LedgerError::StaleOwner { .. } => {
            shared.metrics.stale_owner.inc();
            tracing::warn!(error = %e, "room write refused: another engine owns the room now");
            Some(Stop::Stale)
        }
        LedgerError::IdentityLost(_) => {
            shared.halt(&e.to_string());
            Some(Stop::Halted)
        }
        _ => None,
    }
}

/// Retry a ledger call until it succeeds; `Err(Stop)` if the room must stop instead.
macro_rules! retry {
    ($shared:expr, $op:literal, $call:expr) => {{
        let mut delay = Duration::from_millis(50);
        loop {
            let r = $call;
            $shared.metrics.ledger($op, &r);
            match r {
                Ok(v) => break Ok(v),
                Err(e) => {
                    if let Some(stop) = stop_for($shared, &e) {
                        break Err(stop);
                    }
                    tracing::warn!(op = $op, error = %e, "ledger call failed; retrying");
                    if $shared.shutdown.is_cancelled() {
                        break Err(Stop::Shutdown);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }};
}

/// Open a new round: next nonce, fresh seed, saved before its commitment is published.
async fn open(shared: &Shared, fence: &Fence, window: Duration) -> Result<OpenRound, Stop> {
    let game_id = fence.game_id.as_str();
    let nonce = retry!(shared, "next_nonce", shared.ledger.next_nonce(fence).await)?;
    let server_seed = loop {
        match fairness::new_server_seed() {
            Ok(s) => break s,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for a server seed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let opens_at = now_ms();
    let state = RoundState {
        game_id: game_id.to_owned(),
        round_id: format!("{game_id}-{nonce}"),
        nonce,
        commitment: fairness::commitment(&server_seed),
        server_seed,
        betting_opens_at: opens_at,
        betting_closes_at: opens_at + window.as_millis() as u64,
    };
    // A round another engine left open (RoundOpen) is a bug in the recovery: it is retried,
    // never overwritten, so its stakes cannot be forgotten.
    retry!(
        shared,
        "open_round",
        shared.ledger.open_round(fence, &state).await
    )?;
    Ok(OpenRound::from_state(state))
}

pub(super) async fn run(
    shared: Arc<Shared>,
    game_id: String,
    generation: u64,
    mut rx: mpsc::Receiver<QueuedBet>,
    revoked: CancellationToken,
) {
    // Stopped at once when the lease is lost: whatever call is in flight is dropped. Every
    // ledger step is atomic and fenced, and unacknowledged bets go to the room's next owner.
    let stopped = tokio::select! {
        biased;
        _ = revoked.cancelled() => return,
        r = rounds(&shared, &game_id, generation, &mut rx) => r,
    };
    if let Err(stop) = stopped {
        tracing::info!(game_id, ?stop, "room stopped");
        if stop == Stop::Stale {
            // The engine that claimed the room in the ledger runs it; a lease still held here
            // would only keep it from taking the room over on the bus. Given up before this
            // task is forgotten, so that no new task is started for the room meanwhile.
            shared.give_up(&game_id).await;
        }
        // Held bets stay unacknowledged: a durable bus hands them to the room's owner.
        shared.forget(&game_id, generation);
    }
}

/// Take the room over in the ledger, once a round its previous owner left open is overdue
/// (one still within its time may be finishing on that owner, in a handover): the claim makes
/// every earlier owner's writes stale. Then roll and settle what was left, with the seed it
/// committed to.
async fn take_over(shared: &Shared, game_id: &str) -> Result<Fence, Stop> {
    let mut first_seen: Option<String> = None;
    loop {
        let current = retry!(
            shared,
            "current_round",
            shared.ledger.current_round(game_id).await
        )?;
        let Some(left) = current else { break };
        // The previous owner may finish the round it had open, never open another: one that
        // does has lost the room without noticing (paused, partitioned), and is cut off now.
        if first_seen.get_or_insert_with(|| left.round_id.clone()) != &left.round_id {
            tracing::warn!(game_id, round = %left.round_id, "a former owner opened a round after losing the room");
            break;
        }
        let overdue_at =
            left.betting_closes_at + (shared.cfg.result_pause + RECOVERY_GRACE).as_millis() as u64;
        let now = now_ms();
        if now >= overdue_at {
            break;
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Err(Stop::Shutdown),
            _ = tokio::time::sleep(Duration::from_millis((overdue_at - now).min(1_000))) => {}
        }
    }
    let fence = retry!(
        shared,
        "claim_room",
        shared.ledger.claim_room(game_id).await
    )?;
    tracing::debug!(game_id, epoch = fence.epoch, "room claimed in the ledger");
    while let Some(left) = retry!(
        shared,
        "current_round",
        shared.ledger.current_round(game_id).await
    )? {
        tracing::info!(round = %left.round_id, "finishing a round left open");
        settle(shared, &fence, &OpenRound::from_state(left)).await?;
    }
    Ok(fence)
}

/// The room's rounds, until the room goes idle or moves (`Ok`) or must stop (`Err`).
async fn rounds(
    shared: &Arc<Shared>,
    game_id: &str,
    generation: u64,
    rx: &mut mpsc::Receiver<QueuedBet>,
) -> Result<(), Stop> {
    let fence = take_over(shared, game_id).await?;
    let mut carried: Vec<QueuedBet> = Vec::new();
    let (window, pause) = (shared.cfg.betting_window, shared.cfg.result_pause);
    let mut first_window =
        Some(window + phase::first_round_extension(game_id, now_ms(), window, pause));
    loop {
        let window = first_window.take().unwrap_or(window);
        play_round(shared, game_id, &fence, window, rx, &mut carried).await?;
        carry_during_pause(shared, rx, &mut carried).await;
        if shared.shutdown.is_cancelled() {
            // Carried bets stay unacknowledged: a durable bus hands them to the next owner.
            return Ok(());
        }
        if !shared.is_active(game_id) {
            // No members any more, or another engine owns the room now: stop opening rounds.
            return retire(shared, &fence, game_id, generation, rx, &mut carried).await;
        }
    }
}

/// One round: open it, take the bets carried over from the pause and those that arrive
/// until its window closes, then roll and settle it.
async fn play_round(
    shared: &Shared,
    game_id: &str,
    fence: &Fence,
    window: Duration,
    rx: &mut mpsc::Receiver<QueuedBet>,
    carried: &mut Vec<QueuedBet>,
) -> Result<(), Stop> {
    let opened = Instant::now();
    let mut round = open(shared, fence, window).await?;
    let opens_at = round.info.betting_opens_at;
    shared
        .publish(
            Target::Room(game_id.to_owned()),
            frames::round_started(&round.info, opens_at),
            opens_at,
        )
        .await;
    for bet in std::mem::take(carried) {
        take_bet(shared, fence, &mut round, bet).await?;
    }
    take_bets_until(shared, fence, &mut round, rx, opened + window).await?;
    settle(shared, fence, &round).await?;
    shared.metrics.rounds.inc();
    shared
        .metrics
        .round_duration
        .observe(opened.elapsed().as_secs_f64());
    Ok(())
}

/// Take the bets that arrive until `closes` (or until the intake is done, or the queue closed).
async fn take_bets_until(
    shared: &Shared,
    fence: &Fence,
    round: &mut OpenRound,
    rx: &mut mpsc::Receiver<QueuedBet>,
    closes: Instant,
) -> Result<(), Stop> {
    loop {
        tokio::select! {
            biased;
            _ = shared.intake_done.cancelled() => {
                // Draining: the bets already read join this round, which closes now so
                // the room can pass to another engine.
                while let Ok(bet) = rx.try_recv() {
                    take_bet(shared, fence, round, bet).await?;
                }
                return Ok(());
            }
            _ = tokio::time::sleep_until(closes) => return Ok(()),
            bet = rx.recv() => match bet {
                Some(bet) => take_bet(shared, fence, round, bet).await?,
                None => return Ok(()),
            },
        }
    }
}

/// The pause after a round's result: bets arriving meanwhile are kept for the next round.
async fn carry_during_pause(
    shared: &Shared,
    rx: &mut mpsc::Receiver<QueuedBet>,
    carried: &mut Vec<QueuedBet>,
) {
    let resume = Instant::now() + shared.cfg.result_pause;
    loop {
        tokio::select! {
            biased;
            _ = shared.intake_done.cancelled() => break,
            _ = tokio::time::sleep_until(resume) => break,
            bet = rx.recv() => match bet {
                Some(bet) => carried.push(bet),
                None => break,
            },
        }
    }
}

/// The room is no longer run here: bets that arrived meanwhile cannot join a round here
/// (rejected, or left for the room's next owner on a durable bus) until the task may exit.
async fn retire(
    shared: &Shared,
    fence: &Fence,
    game_id: &str,
    generation: u64,
    rx: &mut mpsc::Receiver<QueuedBet>,
    carried: &mut Vec<QueuedBet>,
) -> Result<(), Stop> {
    loop {
        for bet in carried.drain(..) {
            if shared.bus.redelivers() {
                // Unacknowledged: the room's next owner takes it over.
                continue;
            }
            let wager = unplaced(&bet);
            reject(shared, fence, &bet, &wager, BetRejectReason::RoundClosed).await?;
        }
        if shared.try_retire(game_id, generation, rx) {
            tracing::debug!(game_id, "room stopped");
            return Ok(());
        }
        while let Ok(bet) = rx.try_recv() {
            carried.push(bet);
        }
    }
}

/// Apply every rule to one bet and, if it passes, debit it into the open round.
async fn take_bet(
    shared: &Shared,
    fence: &Fence,
    round: &mut OpenRound,
    q: QueuedBet,
) -> Result<(), Stop> {
    let bet = &q.bet;
    // No separate look-up of the key: a rejection keeps an existing record (reject_bet) and
    // placing finds it (Placed::Existing), so a repeated key always gets its first outcome.
    let raw = unplaced(&q);
    let selection = match check_bet(shared, round, &q) {
        Ok(s) => s,
        Err(reason) => return reject(shared, fence, &q, &raw, reason).await,
    };
    if let Some(amount) = shared.cfg.starting_balance {
        credit_starting_balance(shared, &bet.user_id, amount).await;
    }
    let wager = Wager {
        round_id: round.info.round_id.clone(),
        selection: selection.to_json(),
        ..raw.clone()
    };
    let placed = shared.ledger.place_bet(fence, &wager).await;
    shared.metrics.ledger("place_bet", &placed);
    match placed {
        Ok(Placed::Accepted(_)) => {
            // Durable in the ledger as pending in this round: whoever settles the round (this
            // engine, or the room's next owner) settles it, so the bus may forget it.
            round.accepted += 1;
            shared.ack(&q.delivery_id).await;
            Ok(())
        }
        Ok(Placed::RoundClosed) => {
            reject(shared, fence, &q, &raw, BetRejectReason::RoundClosed).await
        }
        Ok(Placed::Existing(existing)) => {
            answer_existing(shared, round, &q, existing).await;
            Ok(())
        }
        Ok(Placed::Insufficient(record)) => {
            shared
                .metrics
                .bets_rejected
                .with_label_values(&[BetRejectReason::InsufficientBalance.as_str()])
                .inc();
            send_outcome(shared, &record).await;
            shared.ack(&q.delivery_id).await;
            Ok(())
        }
        Err(LedgerError::InvalidAmount(_) | LedgerError::Overflow(_)) => {
            reject(shared, fence, &q, &raw, BetRejectReason::InvalidAmount).await
        }
        Err(e) => ledger_unavailable(shared, &q, &e),
    }
}

/// The rules a bet must pass before it is placed: a valid selection and amount, a payable
/// win, a valid client seed, and room in the round. Its normalised selection, or why not.
fn check_bet(
    shared: &Shared,
    round: &OpenRound,
    q: &QueuedBet,
) -> Result<Selection, BetRejectReason> {
    let bet = &q.bet;
    let selection = Selection::from_json(&bet.selection)
        .and_then(|s| check_amount(&s, bet.amount).map(|()| s))
        .map_err(|e| {
            tracing::debug!(key = %bet.idempotency_key, error = %e, "bet refused");
            e.code()
        })?;
    // A win must be payable: no bet whose payout the ledger could not hold.
    if !selection
        .win_payout(bet.amount)
        .is_ok_and(|p| p <= MAX_AMOUNT)
    {
        return Err(BetRejectReason::InvalidAmount);
    }
    if let Some(seed) = &bet.client_seed {
        if crate::protocol::check_client_seed(seed).is_err() {
            return Err(BetRejectReason::InvalidClientSeed);
        }
    }
    if round.accepted >= shared.cfg.max_bets_per_round {
        return Err(BetRejectReason::RoundFull);
    }
    Ok(selection)
}

/// The bet as recorded when it never reached a round.
fn unplaced(q: &QueuedBet) -> Wager {
    let bet = &q.bet;
    Wager {
        user_id: bet.user_id.clone(),
        key: bet.idempotency_key.clone(),
        game_id: bet.game_id.clone(),
        round_id: String::new(),
        amount: bet.amount,
        selection: bet.selection.clone(),
        client_seed: bet.client_seed.clone(),
        delivery: q.delivery_id.clone(),
    }
}

/// Local mode: the first bet of a player credits the starting balance (once per player, keyed).
async fn credit_starting_balance(shared: &Shared, user_id: &str, amount: i64) {
    if shared.was_credited(user_id) {
        return;
    }
    let t = Transfer {
        key: format!("starting-balance:{user_id}"),
        kind: EntryKind::Deposit,
        from: TREASURY.to_owned(),
        to: user_account(user_id),
        amount,
        memo: "starting balance".into(),
    };
    let r = shared.ledger.transfer(&t).await;
    shared.metrics.ledger("transfer", &r);
    match r {
        Ok(_) => shared.mark_credited(user_id),
        Err(e) => tracing::warn!(user_id, error = %e, "starting balance not credited"),
    }
}

/// A key seen before gets its original outcome; a pending one is settled with its round.
async fn answer_existing(shared: &Shared, round: &mut OpenRound, q: &QueuedBet, rec: BetRecord) {
    if let BetState::Pending { .. } = rec.state {
        // Already debited into a round that will settle it; nothing to add.
        tracing::debug!(key = %rec.wager.key, round = %rec.wager.round_id, current = %round.info.round_id, "duplicate of a pending bet");
        shared.ack(&q.delivery_id).await;
        return;
    }
    // The same bus entry handled before (taken over from this engine while it held it, or
    // left behind by an engine that died): whoever decided it may have died before telling
    // the player. Another entry with the key: the player asks again, and is told again.
    if q.redelivered || rec.wager.delivery == q.delivery_id {
        send_outcome_if_unsent(shared, &rec).await;
    } else {
        send_outcome(shared, &rec).await;
    }
    shared.ack(&q.delivery_id).await;
}

async fn reject(
    shared: &Shared,
    fence: &Fence,
    q: &QueuedBet,
    wager: &Wager,
    reason: BetRejectReason,
) -> Result<(), Stop> {
    let reason = reason.as_str();
    let r = shared.ledger.reject_bet(fence, wager, reason).await;
    shared.metrics.ledger("reject_bet", &r);
    match r {
        Ok(record) => {
            shared
                .metrics
                .bets_rejected
                .with_label_values(&[reason])
                .inc();
            send_outcome(shared, &record).await;
            shared.ack(&q.delivery_id).await;
            Ok(())
        }
        Err(e) => ledger_unavailable(shared, q, &e),
    }
}

/// A bet the ledger did not take: left unacknowledged (a durable bus redelivers it once the
/// ledger is back, or to the room's owner); the room stops if the refusal says it must.
fn ledger_unavailable(shared: &Shared, q: &QueuedBet, e: &LedgerError) -> Result<(), Stop> {
    if let Some(stop) = stop_for(shared, e) {
        return Err(stop);
    }
    tracing::warn!(key = %q.bet.idempotency_key, error = %e, "ledger unavailable; bet left for redelivery");
    Ok(())
}

/// Tells the player its bet's outcome (again, if it asked again with the same key).
async fn send_outcome(shared: &Shared, record: &BetRecord) {
    send_outcomes(shared, [record], false).await;
}

/// Tells the player an outcome another engine decided and may have died before sending: sent
/// unless a notice for the bet already went out.
async fn send_outcome_if_unsent(shared: &Shared, record: &BetRecord) {
    send_outcomes(shared, [record], true).await;
}

/// Tells players their bets' outcomes, all in one bus call (retried until sent); false if the
/// engine stopped before they could be.
async fn send_outcomes<'a>(
    shared: &Shared,
    records: impl IntoIterator<Item = &'a BetRecord>,
    only_if_unsent: bool,
) -> bool {
    let marked: Vec<(&BetRecord, bool)> =
        records.into_iter().map(|r| (r, only_if_unsent)).collect();
    send_marked(shared, marked).await
}

/// [`send_outcomes`] with the `only_if_unsent` mark chosen per record.
async fn send_marked(shared: &Shared, records: Vec<(&BetRecord, bool)>) -> bool {
    let at = now_ms();
    let notices: Vec<MarkedNotice> = records
        .into_iter()
        .filter_map(|(record, only_if_unsent)| {
            let frame = frames::bet_outcome(record, at)?;
            let w = &record.wager;
            Some(MarkedNotice {
                delivery: Delivery {
                    target: Target::User(w.user_id.clone()),
                    emitted_at_ms: at,
                    except_connection: None,
                    frame: Arc::from(frame),
                },
                key: format!("outcome:{}:{}", w.user_id, w.key),
                only_if_unsent,
            })
        })
        .collect();
    shared.publish_outcomes(notices).await
}

/// Roll and settle every bet of the round. The ledger's list of the round's bets is the source
/// of truth, so settlement covers exactly what was debited.
async fn settle(shared: &Shared, fence: &Fence, round: &OpenRound) -> Result<(), Stop> {
    let id = &round.info.round_id;
    let (bets, reveal) = close_and_roll(shared, fence, round).await?;
    let at = now_ms();
    let room = Target::Room(round.info.game_id.clone());
    shared
        .publish(
            room.clone(),
            frames::dice_rolled(&round.info, &reveal, at),
            at,
        )
        .await;

    // Bets settled by a previous owner of the room are done, but it may have died between
    // settling one and telling its player.
    let decided = bets
        .iter()
        .filter(|rec| !matches!(rec.state, BetState::Pending { .. }));
    if !send_outcomes(shared, decided, true).await {
        return Err(Stop::Shutdown);
    }
    let results = settle_pending(shared, fence, id, &bets, reveal.roll).await?;
    let totals = count_settled(shared, &results);
    retry!(
        shared,
        "finish_round",
        shared.ledger.finish_round(fence, id).await
    )?;
    let at = now_ms();
    shared
        .publish(
            room,
            frames::round_result(&round.info, &reveal, &totals, at),
            at,
        )
        .await;
    Ok(())
}

/// Close the round and roll it: the round's bets as the ledger has them, and what the roll
/// reveals.
async fn close_and_roll(
    shared: &Shared,
    fence: &Fence,
    round: &OpenRound,
) -> Result<(Vec<BetRecord>, Reveal), Stop> {
    let id = &round.info.round_id;
    // Closing first makes the list of bets final: a stalled engine still placing into this
    // round is refused, so every engine that rolls it gets the same roll.
    retry!(
        shared,
        "close_round",
        shared.ledger.close_round(fence, id).await
    )?;
    let bets = retry!(shared, "round_bets", shared.ledger.round_bets(id).await)?;
    let mix = ClientSeedMix::new(bets.iter().filter_map(|b| b.wager.client_seed.clone()));
    let roll = fairness::roll(&round.server_seed, &mix.mix, round.info.nonce);
    let reveal = Reveal {
        roll,
        server_seed: round.server_seed.clone(),
        client_seed_mix: mix.mix,
        client_seeds: mix.seeds,
        bets: bets.len(),
    };
    Ok((bets, reveal))
}

/// Settle the round's pending bets in batches: one ledger call (one Redis script run) per
/// batch. The settled records, in order.
async fn settle_pending(
    shared: &Shared,
    fence: &Fence,
    round_id: &str,
    bets: &[BetRecord],
    roll: u32,
) -> Result<Vec<BetRecord>, Stop> {
    let pending: Vec<&BetRecord> = bets
        .iter()
        .filter(|rec| matches!(rec.state, BetState::Pending { .. }))
        .collect();
    let mut results: Vec<BetRecord> = Vec::with_capacity(pending.len());
    for chunk in pending.chunks(SETTLE_BATCH) {
        // On a stop the round stays unfinished: its next settler settles the rest and tells
        // the players not yet told.
        results.extend(settle_batch(shared, fence, round_id, chunk, roll).await?);
    }
    Ok(results)
}

/// The round's totals over its settled bets, each counted in the metrics too.
fn count_settled(shared: &Shared, results: &[BetRecord]) -> RoundTotals {
    let mut totals = RoundTotals::default();
    for settled in results {
        if let BetState::Settled {
            outcome, payout, ..
        } = &settled.state
        {
            let label = if *payout > 0 { "win" } else { "lose" };
            shared
                .metrics
                .bets_settled
                .with_label_values(&[label])
                .inc();
            totals.bets += 1;
            totals.wagered = totals.wagered.saturating_add(settled.wager.amount);
            totals.paid = totals.paid.saturating_add(*payout);
            if matches!(outcome, crate::ledger::Outcome::Win) {
                totals.winners += 1;
            }
        }
    }
    totals
}

/// Settle a batch of the round's bets in one ledger call (retrying those the ledger could not
/// be reached for) and tell each player its bet's outcome; `Err` if the room stops with some
/// unsettled or untold.
async fn settle_batch(
    shared: &Shared,
    fence: &Fence,
    round_id: &str,
    recs: &[&BetRecord],
    roll: u32,
) -> Result<Vec<BetRecord>, Stop> {
    let items = settle_items(recs, roll);
    let mut done: Vec<Option<Settlement>> = vec![None; recs.len()];
    loop {
        let todo: Vec<usize> = (0..recs.len()).filter(|&i| done[i].is_none()).collect();
        if todo.is_empty() {
            break;
        }
        let batch: Vec<SettleItem> = todo.iter().map(|&i| items[i].clone()).collect();
        let results = shared.ledger.settle_bets(fence, &batch).await;
        let mut failure = (results.len() != batch.len()).then(|| "short answer".to_owned());
        for (&i, r) in todo.iter().zip(results) {
            shared.metrics.ledger("settle_bet", &r);
            match r {
                Ok(s) => done[i] = Some(s),
                Err(e) => {
                    // Refused as a whole (stale owner, lost identity): nothing was written.
                    if let Some(stop) = stop_for(shared, &e) {
                        return Err(stop);
                    }
                    if matches!(e, LedgerError::Unavailable(_) | LedgerError::Corrupt(_)) {
                        failure = Some(e.to_string());
                    } else {
                        tracing::error!(key = %recs[i].wager.key, error = %e, "settlement refused");
                        done[i] = Some(Settlement {
                            record: (*recs[i]).clone(),
                            now: false,
                        });
                    }
                }
            }
        }
        if let Some(error) = failure {
            if shared.shutdown.is_cancelled() {
                tracing::warn!(round = %round_id, %error, "stopping with the round unsettled");
                return Err(Stop::Shutdown);
            }
            tracing::warn!(round = %round_id, %error, "settlement failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let settled: Vec<Settlement> = done.into_iter().flatten().collect();
    if !tell_settled(shared, &settled).await {
        return Err(Stop::Shutdown);
    }
    Ok(settled.into_iter().map(|s| s.record).collect())
}

/// What settling each bet pays, at this roll.
fn settle_items(recs: &[&BetRecord], roll: u32) -> Vec<SettleItem> {
    recs.iter()
        .map(|rec| {
            let w = &rec.wager;
            // Stored selections were normalised when placed; if one cannot be read back the
            // stake is returned rather than guessed at.
            let payout = Selection::from_json(&w.selection)
                .and_then(|s| s.payout(w.amount, roll))
                .unwrap_or(w.amount);
            SettleItem {
                user_id: w.user_id.clone(),
                key: w.key.clone(),
                roll,
                payout,
            }
        })
        .collect()
}

/// Tell the players of a settled batch their outcomes; false if the engine stopped first. A
/// bet this call settled is told now. One found settled already was settled by an earlier try
/// whose answer was lost (or by the room's previous owner): told unless a notice for it went
/// out, so every player hears of its bet, once.
async fn tell_settled(shared: &Shared, settled: &[Settlement]) -> bool {
    let notices: Vec<(&BetRecord, bool)> = settled
        .iter()
        .filter(|s| matches!(s.record.state, BetState::Settled { .. }))
        .map(|s| (&s.record, !s.now))
        .collect();
    send_marked(shared, notices).await
}
