//! [`Shared`]: the state the intake, the supervisor and every room task hold in common, and
//! what room tasks do through it (publish, acknowledge, retire, halt). A leaf of the engine:
//! it starts no task (the supervisor in `runtime` does).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Delivery, EngineBus, MarkedNotice, QueuedBet, Target};
use crate::ledger::Ledger;
use crate::sync::lock;

use super::config::EngineConfig;
use super::metrics::EngineMetrics;

/// Acknowledgements sent together; a partial batch goes after `ACK_INTERVAL` (see `runtime`).
const ACK_BATCH: usize = 256;

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
    /// Every room task (and the intake): the drain waits for them.
    pub tracker: TaskTracker,
    /// Delivery ids waiting to be acknowledged (see `ack`).
    acks: Mutex<Vec<String>>,
    /// Notified when a full batch of acknowledgements is waiting.
    pub ack_ready: tokio::sync::Notify,
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
pub(super) struct RoomTask {
    generation: u64,
    pub tx: mpsc::Sender<QueuedBet>,
    revoked: CancellationToken,
}

/// Most attempts at publishing a room frame (round started, dice rolled, round result).
const PUBLISH_ATTEMPTS: u32 = 4;

impl Shared {
    pub fn new(
        bus: Arc<dyn EngineBus>,
        ledger: Arc<dyn Ledger>,
        cfg: EngineConfig,
        metrics: EngineMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
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
        }
    }

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

    /// The rooms this engine runs now (from the bus's list of active rooms).
    pub fn set_active(&self, rooms: HashSet<String>) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = rooms;
    }

    /// Room → its running task, locked.
    pub fn rooms(&self) -> MutexGuard<'_, HashMap<String, RoomTask>> {
        lock(&self.rooms)
    }

    /// Record a new task for the room, taking its bets from `tx`'s receiver (the caller holds
    /// the rooms lock, and starts the task): its generation, and the token that revokes it.
    pub fn add_room(
        &self,
        rooms: &mut HashMap<String, RoomTask>,
        game_id: &str,
        tx: mpsc::Sender<QueuedBet>,
    ) -> (u64, CancellationToken) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
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
        (generation, revoked)
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
    pub fn revoke(&self, game_id: &str) {
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

    pub fn resume(&self) {
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
    pub async fn flush_acks(&self) {
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
}
