//! `place_bet`: checked, handed to the engines through the bus, answered.

use super::Conn;
use crate::bus::{BetRequest, Bound, BusError};
use crate::clock::now_ms;
use crate::gateway::handle::CloseCause;
use crate::protocol::{BetRejectReason, PlaceBet, ServerFrame};

impl Conn {
    pub(super) async fn place_bet(&mut self, bet: PlaceBet) -> Result<(), CloseCause> {
        if !self.rooms.iter().any(|r| **r == *bet.game_id) {
            return self
                .bet_rejected(
                    &bet.idempotency_key,
                    BetRejectReason::NotInRoom,
                    "join the room before betting in it",
                )
                .await;
        }
        let request = BetRequest {
            idempotency_key: bet.idempotency_key,
            user_id: self.user().to_string(),
            game_id: bet.game_id,
            amount: bet.amount,
            selection: bet.selection,
            client_seed: bet.client_seed,
            gateway_id: self.gw.cfg.gateway_id.clone(),
            received_at_ms: now_ms(),
        };
        let submitting = std::time::Instant::now();
        let submitted = self.gw.bus.submit_bet(&request).await;
        self.gw
            .metrics
            .bet_submit_ms
            .observe(submitting.elapsed().as_secs_f64() * 1000.0);
        match submitted {
            Ok(()) => {
                self.gw
                    .metrics
                    .bets
                    .with_label_values(&["acknowledged"])
                    .inc();
                self.reply(&ServerFrame::BetAcknowledged {
                    idempotency_key: &request.idempotency_key,
                    status: "processing",
                })
                .await
            }
            Err(BusError::Refused(Bound::BetRate)) => {
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::RateLimited,
                    "too many bets per second; the bet was not placed",
                )
                .await
            }
            Err(BusError::Refused(bound)) => {
                tracing::warn!(%bound, game_id = %request.game_id, "bet refused");
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::EngineUnavailable,
                    "the room's engines are behind; the bet was not placed: retry later",
                )
                .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "submit_bet failed");
                // A timed-out XADD may still have landed: only a retry with the same key can
                // tell, and it never places the bet twice.
                self.bet_rejected(
                    &request.idempotency_key,
                    BetRejectReason::EngineUnavailable,
                    "bets cannot be accepted right now; the bet may not have been placed: retry \
                     with the same idempotencyKey",
                )
                .await
            }
        }
    }

    pub(super) async fn bet_rejected(
        &mut self,
        idempotency_key: &str,
        reason: BetRejectReason,
        message: &str,
    ) -> Result<(), CloseCause> {
        self.gw.metrics.bets.with_label_values(&["rejected"]).inc();
        self.gw
            .metrics
            .bet_rejections
            .with_label_values(&[reason.as_str()])
            .inc();
        self.reply(&ServerFrame::BetRejected {
            idempotency_key,
            reason,
            message,
        })
        .await
    }
}
