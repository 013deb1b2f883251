//! The engine's settings: [`EngineConfig`] and what refusing one means ([`EngineError`]).

use std::time::Duration;

/// How the engine runs rounds.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Identifies this engine in logs (and, with Redis, in room leases).
    pub engine_id: String,
    /// How long a round accepts bets after `round_started`.
    pub betting_window: Duration,
    /// Pause after a round's results before the next round opens. Bets arriving meanwhile join
    /// the next round.
    pub result_pause: Duration,
    /// Local mode: credit each new player this many minor units once (from the treasury).
    pub starting_balance: Option<i64>,
    /// How often the list of active rooms is refreshed.
    pub rooms_poll: Duration,
    /// Most bets one round takes; more are rejected `ROUND_FULL`.
    pub max_bets_per_round: usize,
    /// Most bets read from the bus in one call.
    pub bet_batch: usize,
    /// On shutdown, longest wait for the rounds in progress to settle before the engine gives
    /// its rooms up anyway (a round left open is finished by the room's next owner).
    pub drain_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            engine_id: "engine".into(),
            betting_window: Duration::from_secs(4),
            result_pause: Duration::from_secs(1),
            starting_balance: None,
            rooms_poll: Duration::from_millis(250),
            max_bets_per_round: 50_000,
            bet_batch: 512,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine config: {0}")]
    Config(String),
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.betting_window.is_zero() {
            return Err(EngineError::Config("betting_window must be > 0".into()));
        }
        if self.rooms_poll.is_zero() {
            return Err(EngineError::Config("rooms_poll must be > 0".into()));
        }
        if self.max_bets_per_round == 0 || self.bet_batch == 0 {
            return Err(EngineError::Config(
                "max_bets_per_round and bet_batch must be > 0".into(),
            ));
        }
        if let Some(b) = self.starting_balance {
            if b <= 0 {
                return Err(EngineError::Config(format!(
                    "starting_balance must be > 0 minor units, got {b}"
                )));
            }
        }
        Ok(())
    }
}
