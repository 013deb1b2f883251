//! Why a bench run failed.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench targets loopback only; {0} is not a 127.0.0.0/8 ws:// URL")]
    NotLoopback(String),
    #[error("--connections, --rooms and --duration must be > 0")]
    Empty,
    #[error("--rooms-per-player must be between 1 and --rooms")]
    RoomsPerPlayer,
    #[error("worker process: {0}")]
    Worker(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("report: {0}")]
    Report(#[from] serde_json::Error),
}
