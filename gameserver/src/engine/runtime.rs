//! The supervisor: starts a task per active room (and only it does), routes each bet the
//! intake reads to its room's task, watches leases and the ledger's identity, acknowledges in
//! batches, and drains on shutdown. Room tasks themselves are in `room`; what they share with
//! the supervisor is [`Shared`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, EngineBus, QueuedBet};
use crate::ledger::{Ledger, LedgerError};

use super::config::EngineConfig;
use super::metrics::EngineMetrics;
use super::room;
use super::shared::{RoomTask, Shared};

/// Bets queued towards one room task before the intake waits.
const ROOM_QUEUE: usize = 4_096;

/// A partial batch of acknowledgements goes after this long (a full one at once, see
/// [`Shared::ack`]).
const ACK_INTERVAL: Duration = Duration::from_millis(5);

/// Pause after a read that returned fewer bets than a full batch (see `intake`).
const BET_GATHER: Duration = Duration::from_millis(5);

/// How often lost leases and the ledger's identity are looked at.
const LEASE_WATCH: Duration = Duration::from_millis(50);
const IDENTITY_WATCH: Duration = Duration::from_secs(1);

pub(super) struct Runtime {
    shared: Arc<Shared>,
}

impl Runtime {
    pub fn new(
        bus: Arc<dyn EngineBus>,
        ledger: Arc<dyn Ledger>,
        cfg: EngineConfig,
        metrics: EngineMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(bus, ledger, cfg, metrics, shutdown)),
        }
    }

    pub async fn run(self) {
        let shared = self.shared;
        tracing::info!(engine = %shared.cfg.engine_id, "engine started");
        shared.tracker.spawn(intake(Arc::clone(&shared)));
        let acker_stop = CancellationToken::new();
        let acker = tokio::spawn(acker(Arc::clone(&shared), acker_stop.clone()));
        // Both watchers run until the process ends: leases are renewed while draining too.
        tokio::spawn(watch_leases(Arc::clone(&shared)));
        tokio::spawn(watch_identity(Arc::clone(&shared)));
        let mut tick = tokio::time::interval(shared.cfg.rooms_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                _ = tick.tick() => refresh_rooms(&shared).await,
            }
        }
        drain(&shared, &mut tick, acker_stop, acker).await;
        tracing::info!(engine = %shared.cfg.engine_id, "engine stopped");
    }
}

/// Graceful stop: the intake stops reading, rooms close their rounds with the bets already
/// read and settle them (leases are renewed meanwhile), then the rooms are given up.
async fn drain(
    shared: &Arc<Shared>,
    tick: &mut tokio::time::Interval,
    acker_stop: CancellationToken,
    acker: tokio::task::JoinHandle<()>,
) {
    let started = tokio::time::Instant::now();
    tracing::info!(engine = %shared.cfg.engine_id, "draining");
    if let Err(e) = shared.bus.begin_drain().await {
        tracing::warn!(error = %e, "cannot announce the drain; other engines notice via lease expiry");
    }
    shared.tracker.close();
    let deadline = tokio::time::sleep(shared.cfg.drain_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shared.tracker.wait() => break,
            _ = &mut deadline => {
                tracing::warn!("drain timeout: leaving unfinished rounds to the rooms' next owners");
                break;
            }
            _ = tick.tick() => refresh_rooms(shared).await,
        }
    }
    // Acknowledge what the rooms took into the ledger before handing the rest over.
    acker_stop.cancel();
    let _ = acker.await;
    shared.flush_acks().await;
    if let Err(e) = shared.bus.stand_down().await {
        tracing::warn!(error = %e, "cannot release rooms; they move when their leases expire");
    }
    tracing::info!(
        engine = %shared.cfg.engine_id,
        ms = started.elapsed().as_millis() as u64,
        "drained"
    );
}

/// Sends acknowledgements in batches until stopped.
async fn acker(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.ack_ready.notified() => {}
            _ = tokio::time::sleep(ACK_INTERVAL) => {}
        }
        shared.flush_acks().await;
    }
}

/// Stops the task of every room whose lease the bus found lost, at once: a room's rounds never
/// run on in an engine that may no longer own it (the ledger's fence refuses its writes anyway).
/// Independent of the room refresh, which may be stuck on an unreachable Redis.
async fn watch_leases(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(LEASE_WATCH);
    loop {
        tick.tick().await;
        for room in shared.bus.lost_rooms() {
            shared.metrics.leases_lost.inc();
            shared.revoke(&room);
        }
    }
}

/// Halts bet intake while the ledger's identity marker is missing or changed, and resumes when
/// it is back (restored data). Scripts refuse every write meanwhile, so this only stops the
/// engine from trying.
async fn watch_identity(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(IDENTITY_WATCH);
    loop {
        tick.tick().await;
        match shared.ledger.check_identity().await {
            Ok(()) => shared.resume(),
            Err(e @ LedgerError::IdentityLost(_)) => shared.halt(&e.to_string()),
            Err(e) => tracing::debug!(error = %e, "cannot check the ledger's identity"),
        }
    }
}

/// Start a room task; the caller holds the rooms lock.
fn spawn_room(shared: &Arc<Shared>, rooms: &mut HashMap<String, RoomTask>, game_id: &str) {
    let (tx, rx) = mpsc::channel(ROOM_QUEUE);
    let (generation, revoked) = shared.add_room(rooms, game_id, tx);
    tracing::debug!(game_id, "room started");
    shared.tracker.spawn(room::run(
        Arc::clone(shared),
        game_id.to_owned(),
        generation,
        rx,
        revoked,
    ));
}

/// Hand a bet to its room's task, starting the task if needed.
async fn route(shared: &Arc<Shared>, mut bet: QueuedBet) {
    if shared.bus.redelivers() && !shared.is_active(&bet.bet.game_id) {
        // Read just as this engine gave the room up: left unacknowledged for the room's
        // owner to take over, rather than running a second round loop for the room here.
        tracing::debug!(game_id = %bet.bet.game_id, "bet for a room this engine does not run");
        return;
    }
    loop {
        let sender = {
            let mut rooms = shared.rooms();
            let Some(RoomTask { tx, .. }) = rooms.get(&bet.bet.game_id) else {
                if shared.shutdown.is_cancelled() || shared.is_halted() {
                    // Draining: left unacknowledged for the room's next owner.
                    return;
                }
                let game_id = bet.bet.game_id.clone();
                spawn_room(shared, &mut rooms, &game_id);
                continue;
            };
            match tx.try_send(bet) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(b)) => {
                    bet = b;
                    tx.clone()
                }
                Err(mpsc::error::TrySendError::Closed(b)) => {
                    bet = b;
                    rooms.remove(&bet.bet.game_id);
                    continue;
                }
            }
        };
        match sender.send(bet).await {
            Ok(()) => return,
            Err(mpsc::error::SendError(b)) => bet = b,
        }
    }
}

async fn refresh_rooms(shared: &Arc<Shared>) {
    let list = match shared.bus.active_rooms().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list active rooms");
            return;
        }
    };
    let set: HashSet<String> = list.into_iter().collect();
    // While draining, rooms only finish; none is started. Nor while the ledger is halted.
    if !shared.shutdown.is_cancelled() && !shared.is_halted() {
        let mut rooms = shared.rooms();
        for game_id in &set {
            if !rooms.contains_key(game_id) {
                spawn_room(shared, &mut rooms, game_id);
            }
        }
    }
    shared.set_active(set);
}

async fn intake(shared: Arc<Shared>) {
    // Whatever ends the loop, rooms learn that no more bets are coming.
    let _done = shared.intake_done.clone().drop_guard();
    let mut failures = 0u32;
    while !shared.shutdown.is_cancelled() {
        if shared.is_halted() {
            // Bets stay in the bus, unread, until the ledger is back.
            tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                _ = tokio::time::sleep(IDENTITY_WATCH) => continue,
            }
        }
        match shared
            .bus
            .next_bets(shared.cfg.bet_batch, Duration::from_millis(100))
            .await
        {
            Ok(bets) => {
                failures = 0;
                let gather = !bets.is_empty() && bets.len() < shared.cfg.bet_batch;
                for bet in bets {
                    route(&shared, bet).await;
                }
                if gather {
                    // A short read: let bets accumulate for a moment so that the next read
                    // takes several (one stream read per few bets instead of one per bet). The
                    // player already has its acknowledgement; this only delays placement.
                    tokio::select! {
                        _ = shared.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(BET_GATHER) => {}
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::warn!(error = %e, failures, "cannot read bets");
                }
                let pause = match e {
                    BusError::Unavailable(_) => Duration::from_millis(200),
                    BusError::Protocol(_) | BusError::Refused(_) => Duration::from_millis(50),
                };
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
