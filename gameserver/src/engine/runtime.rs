//! Wiring: the bet intake loop, the room supervisor, and routing of bets to room tasks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{BusError, Delivery, EngineBus, MarkedNotice, QueuedBet, Target};
use crate::ledger::{Ledger, LedgerError};

use super::{room, EngineConfig, EngineMetrics};

/// Bets queued towards one room task before the intake waits.
const ROOM_QUEUE: usize = 4_096;

/// Acknowledgements sent together; a partial batch goes after `ACK_INTERVAL`.
const ACK_BATCH: usize = 256;
const ACK_INTERVAL: Duration = Duration::from_millis(5);

/// Pause after a read that returned fewer bets than a full batch (see `intake`).
const BET_GATHER: Duration = Duration::from_millis(5);

/// State shared by the intake, the supervisor and every room task.
pub(super) struct Shared {
    pub bus: Arc<dyn EngineBus>,
    pub ledger: Arc<dyn Ledger>,
    pub cfg: EngineConfig,
    pub metrics: EngineMetrics,
    pub shutdown: CancellationToken,
    /// Cancelled once the intake stopped reading after `shutdown`: every bet read has been
    /// handed to its room, so rooms may close their rounds.
    pub intake_done: CancellationToken,
    tracker: TaskTracker,
    /// Delivery ids waiting to be acknowledged (see `ack`).
    acks: Mutex<Vec<String>>,
    ack_ready: tokio::sync::Notify,
    /// Room → its running task.
    rooms: Mutex<HashMap<String, RoomTask>>,
    /// Bet intake and rounds are halted: the ledger's identity marker is gone (see
    /// [`crate::ledger::durability`]).
    halted: AtomicBool,
    next_generation: AtomicU64,
    active: RwLock<HashSet<String>>,
    /// Players already given their starting balance (the ledger key makes it idempotent; this
    /// only saves a ledger call per bet).
    credited: Mutex<HashSet<String>>,
}

/// A running room task: its generation, the queue of its bets, and the token that stops it at
/// once (its lease was lost, or the ledger halted).
struct RoomTask {
    generation: u64,
    tx: mpsc::Sender<QueuedBet>,
    revoked: CancellationToken,
}

/// How often lost leases and the ledger's identity are looked at.
const LEASE_WATCH: Duration = Duration::from_millis(50);
const IDENTITY_WATCH: Duration = Duration::from_secs(1);

/// Most attempts at publishing a room frame (round started, dice rolled, round result).
const PUBLISH_ATTEMPTS: u32 = 4;

use crate::sync::lock;

impl Shared {
    pub fn is_active(&self, game_id: &str) -> bool {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(game_id)
    }

    pub fn was_credited(&self, user_id: &str) -> bool {
        lock(&self.credited).contains(user_id)
    }

    pub fn mark_credited(&self, user_id: &str) {
        lock(&self.credited).insert(user_id.to_owned());
    }

    /// Stop routing to this room task if nothing is queued for it; true if it may exit.
    pub fn try_retire(
        &self,
        game_id: &str,
        generation: u64,
        rx: &mut mpsc::Receiver<QueuedBet>,
    ) -> bool {
        let mut rooms = lock(&self.rooms);
        if !rx.is_empty() {
            return false;
        }
        self.remove_task(&mut rooms, game_id, generation);
        rx.close();
        true
    }

    /// Forget a room task that stopped on its own (another engine owns the room in the
    /// ledger), so the room can be started afresh if this engine still holds its lease.
    pub fn forget(&self, game_id: &str, generation: u64) {
        self.remove_task(&mut lock(&self.rooms), game_id, generation);
    }

    /// Drops the room's task entry if it is still this generation's (not a newer task's).
    fn remove_task(&self, rooms: &mut HashMap<String, RoomTask>, game_id: &str, generation: u64) {
        if rooms
            .get(game_id)
            .is_some_and(|t| t.generation == generation)
        {
            rooms.remove(game_id);
        }
        self.metrics.rooms.set(rooms.len() as i64);
    }

    /// No longer counts the room as run here (its bets are not routed to a task).
    fn deactivate(&self, game_id: &str) {
        self.active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(game_id);
    }

    /// Stop a room's task at once (its lease is lost): it writes nothing more, and the bets
    /// it holds stay unacknowledged for the room's next owner.
    fn revoke(&self, game_id: &str) {
        if let Some(task) = lock(&self.rooms).remove(game_id) {
            task.revoked.cancel();
            tracing::warn!(game_id, "room lease lost: its rounds stop here at once");
        }
        self.deactivate(game_id);
        self.metrics.rooms.set(lock(&self.rooms).len() as i64);
    }

    /// Another engine owns the room in the ledger: let its lease go too.
    pub async fn give_up(&self, game_id: &str) {
        self.deactivate(game_id);
        if let Err(e) = self.bus.give_up(game_id).await {
            tracing::warn!(game_id, error = %e, "cannot release the room; its lease expires");
        }
    }

    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::Acquire)
    }

    /// The ledger lost its identity: stop taking bets and stop every room (nothing more is
    /// written), until it is back. Not an exit: a crash loop would help nobody.
    pub fn halt(&self, why: &str) {
        if !self.halted.swap(true, Ordering::AcqRel) {
            tracing::error!(
                reason = why,
                "LEDGER IDENTITY LOST: bet intake halted. The ledger's Redis lost or replaced its \
                 data; restore it, or start a new ledger deliberately with `gameserver \
                 ledger-init --new-identity` and restart the engines"
            );
            self.metrics.ledger_halted.set(1);
        }
        let rooms: Vec<RoomTask> = lock(&self.rooms).drain().map(|(_, t)| t).collect();
        for t in rooms {
            t.revoked.cancel();
        }
        self.metrics.rooms.set(0);
    }

    fn resume(&self) {
        if self.halted.swap(false, Ordering::AcqRel) {
            tracing::warn!("ledger identity is back: bet intake resumes");
            self.metrics.ledger_halted.set(0);
        }
    }

    /// Send a room frame, retried a few times; a frame still not sent is logged (players
    /// re-sync from later frames and the room's history).
    pub async fn publish(&self, target: Target, frame: String, at_ms: u64) {
        let delivery = Delivery {
            target,
            emitted_at_ms: at_ms,
            except_connection: None,
            frame: Arc::from(frame),
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=PUBLISH_ATTEMPTS {
            match self.bus.publish(delivery.clone()).await {
                Ok(()) => return,
                Err(e) if attempt == PUBLISH_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "publish failed; giving up on this frame")
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "publish failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// Send bet outcomes to their players in one bus call, each marked so that
    /// `only_if_unsent` copies (a retried settlement, or an engine finishing a dead one's work)
    /// never repeat one. Retried until sent; false if the engine stopped first (the round is
    /// then left unfinished, so its next settler sends what was not sent).
    pub async fn publish_outcomes(&self, mut notices: Vec<MarkedNotice>) -> bool {
        if notices.is_empty() {
            return true;
        }
        let n = notices.len();
        let mut delay = Duration::from_millis(50);
        loop {
            match self.bus.publish_outcomes(notices.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, n, "publishing outcomes failed; retrying");
                    if self.shutdown.is_cancelled() {
                        return false;
                    }
                    // The failed call may have gone through (only its answer was lost): from
                    // now on each notice goes out only if it has not.
                    for notice in &mut notices {
                        notice.only_if_unsent = true;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Acknowledge in the background, in batches: the bet is already durable in the ledger,
    /// and a lost or late ack only means a harmless redelivery (the key answers with its first
    /// outcome).
    pub async fn ack(&self, delivery_id: &str) {
        let full = {
            let mut acks = lock(&self.acks);
            acks.push(delivery_id.to_owned());
            acks.len() >= ACK_BATCH
        };
        if full {
            self.ack_ready.notify_one();
        }
    }

    /// Send the acknowledgements collected so far, once the ledger writes behind them are
    /// durable (a bet acknowledged on the bus exists only in the ledger).
    async fn flush_acks(&self) {
        let batch = std::mem::take(&mut *lock(&self.acks));
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.ledger.sync().await {
            // Left unacknowledged: redelivered, and answered from the ledger's records.
            tracing::warn!(error = %e, n = batch.len(), "ledger not durable yet; bets left unacknowledged");
            return;
        }
        if let Err(e) = self.bus.ack_bets(&batch).await {
            tracing::warn!(error = %e, n = batch.len(), "bet acks failed; they will be redelivered");
        }
    }

    /// Start a room task; the caller holds the rooms lock.
    fn spawn_room(self: &Arc<Self>, rooms: &mut HashMap<String, RoomTask>, game_id: &str) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let revoked = CancellationToken::new();
        rooms.insert(
            game_id.to_owned(),
            RoomTask {
                generation,
                tx,
                revoked: revoked.clone(),
            },
        );
        self.metrics.rooms.set(rooms.len() as i64);
        tracing::debug!(game_id, "room started");
        self.tracker.spawn(room::run(
            Arc::clone(self),
            game_id.to_owned(),
            generation,
            rx,
            revoked,
        ));
    }

    /// Hand a bet to its room's task, starting the task if needed.
    async fn route(self: &Arc<Self>, mut bet: QueuedBet) {
        if self.bus.redelivers() && !self.is_active(&bet.bet.game_id) {
            // Read just as this engine gave the room up: left unacknowledged for the room's
            // owner to take over, rather than running a second round loop for the room here.
            tracing::debug!(game_id = %bet.bet.game_id, "bet for a room this engine does not run");
            return;
        }
        loop {
            let sender = {
                let mut rooms = lock(&self.rooms);
                let Some(RoomTask { tx, .. }) = rooms.get(&bet.bet.game_id) else {
                    if self.shutdown.is_cancelled() || self.is_halted() {
                        // Draining: left unacknowledged for the room's next owner.
                        return;
                    }
                    let game_id = bet.bet.game_id.clone();
                    self.spawn_room(&mut rooms, &game_id);
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
}

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
            shared: Arc::new(Shared {
                bus,
                ledger,
                cfg,
                metrics,
                shutdown,
                tracker: TaskTracker::new(),
                acks: Mutex::new(Vec::new()),
                ack_ready: tokio::sync::Notify::new(),
                rooms: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(1),
                active: RwLock::new(HashSet::new()),
                halted: AtomicBool::new(false),
                credited: Mutex::new(HashSet::new()),
                intake_done: CancellationToken::new(),
            }),
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
        let mut rooms = lock(&shared.rooms);
        for game_id in &set {
            if !rooms.contains_key(game_id) {
                shared.spawn_room(&mut rooms, game_id);
            }
        }
    }
    *shared.active.write().unwrap_or_else(|e| e.into_inner()) = set;
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
                    shared.route(bet).await;
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
