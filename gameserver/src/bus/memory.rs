//! In-process bus for local mode: one gateway and one engine in the same process.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BetRequest, BusError, Delivery, EngineBus, GatewayBus, QueuedBet, Target};

/// Deliveries queued towards the gateway before producers wait (backpressure, not growth).
const DELIVERY_QUEUE: usize = 16_384;

pub struct MemoryBus {
    bets_tx: mpsc::UnboundedSender<QueuedBet>,
    bets_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueuedBet>>,
    deliveries_tx: mpsc::Sender<Delivery>,
    deliveries_rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    subscribed: Mutex<HashSet<String>>,
    members: Mutex<HashMap<String, HashSet<String>>>,
    next_id: AtomicU64,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        let (bets_tx, bets_rx) = mpsc::unbounded_channel();
        let (deliveries_tx, deliveries_rx) = mpsc::channel(DELIVERY_QUEUE);
        Self {
            bets_tx,
            bets_rx: tokio::sync::Mutex::new(bets_rx),
            deliveries_tx,
            deliveries_rx: Mutex::new(Some(deliveries_rx)),
            subscribed: Mutex::new(HashSet::new()),
            members: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn is_wanted(&self, target: &Target) -> bool {
        match target {
            Target::Room(room) => lock(&self.subscribed).contains(room),
            Target::User(_) | Target::All => true,
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<(), BusError> {
        if !self.is_wanted(&delivery.target) {
            return Ok(());
        }
        self.deliveries_tx
            .send(delivery)
            .await
            .map_err(|_| BusError::Unavailable("gateway stopped".into()))
    }
}

/// A poisoned lock only means another task panicked mid-update of plain sets; the data is still
/// usable, so recover it instead of propagating the panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl GatewayBus for MemoryBus {
    async fn submit_bet(&self, bet: &BetRequest) -> Result<(), BusError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.bets_tx
            .send(QueuedBet {
                delivery_id: id.to_string(),
                bet: bet.clone(),
            })
            .map_err(|_| BusError::Unavailable("engine stopped".into()))
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.deliver(delivery).await
    }

    async fn subscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        lock(&self.subscribed).insert(game_id.to_owned());
        Ok(())
    }

    async fn unsubscribe_room(&self, game_id: &str) -> Result<(), BusError> {
        lock(&self.subscribed).remove(game_id);
        Ok(())
    }

    async fn join_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        let mut members = lock(&self.members);
        let room = members.entry(game_id.to_owned()).or_default();
        room.insert(connection_id.to_owned());
        Ok(room.len() as u64)
    }

    async fn leave_room(&self, game_id: &str, connection_id: &str) -> Result<u64, BusError> {
        let mut members = lock(&self.members);
        let Some(room) = members.get_mut(game_id) else {
            return Ok(0);
        };
        room.remove(connection_id);
        let left = room.len() as u64;
        if left == 0 {
            members.remove(game_id);
        }
        Ok(left)
    }

    fn take_deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        lock(&self.deliveries_rx).take()
    }
}

#[async_trait]
impl EngineBus for MemoryBus {
    async fn next_bets(&self, max: usize, wait: Duration) -> Result<Vec<QueuedBet>, BusError> {
        let mut rx = self.bets_rx.lock().await;
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(bet)) => bet,
            Ok(None) => return Err(BusError::Unavailable("all gateways stopped".into())),
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = vec![first];
        while out.len() < max {
            match rx.try_recv() {
                Ok(bet) => out.push(bet),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn ack_bet(&self, _delivery_id: &str) -> Result<(), BusError> {
        // In one process a bet lives and dies with the engine; there is nothing to redeliver.
        Ok(())
    }

    async fn publish(&self, delivery: Delivery) -> Result<(), BusError> {
        self.deliver(delivery).await
    }

    async fn active_rooms(&self) -> Result<Vec<String>, BusError> {
        Ok(lock(&self.members).keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn bet(key: &str) -> BetRequest {
        BetRequest {
            idempotency_key: key.into(),
            user_id: "alice".into(),
            game_id: "g1".into(),
            amount: 100,
            selection: serde_json::json!({"direction": "over", "target": 50}),
            client_seed: None,
            gateway_id: "gw".into(),
            received_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn bets_flow_from_gateway_to_engine_in_order() {
        let bus = MemoryBus::new();
        GatewayBus::submit_bet(&bus, &bet("a")).await.unwrap();
        GatewayBus::submit_bet(&bus, &bet("b")).await.unwrap();
        let got = bus.next_bets(10, Duration::from_millis(10)).await.unwrap();
        let keys: Vec<_> = got.iter().map(|q| q.bet.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(bus
            .next_bets(10, Duration::from_millis(5))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn room_deliveries_reach_the_gateway_only_while_subscribed() {
        let bus = MemoryBus::new();
        let mut rx = bus.take_deliveries().unwrap();
        assert!(bus.take_deliveries().is_none());
        let d = |room: &str| Delivery {
            target: Target::Room(room.into()),
            emitted_at_ms: 1,
            except_connection: None,
            frame: Arc::from(format!("{{\"room\":\"{room}\"}}")),
        };
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        bus.subscribe_room("g1").await.unwrap();
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        bus.unsubscribe_room("g1").await.unwrap();
        EngineBus::publish(&bus, d("g1")).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), d("g1"));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn presence_counts_members_and_lists_active_rooms() {
        let bus = MemoryBus::new();
        assert_eq!(bus.join_room("g1", "c1").await.unwrap(), 1);
        assert_eq!(bus.join_room("g1", "c2").await.unwrap(), 2);
        assert_eq!(bus.join_room("g1", "c2").await.unwrap(), 2);
        assert_eq!(bus.active_rooms().await.unwrap(), ["g1"]);
        assert_eq!(bus.leave_room("g1", "c1").await.unwrap(), 1);
        assert_eq!(bus.leave_room("g1", "c2").await.unwrap(), 0);
        assert!(bus.active_rooms().await.unwrap().is_empty());
    }
}
