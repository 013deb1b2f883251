//! `gameserver bench`: a load generator that opens many authenticated WebSocket connections in
//! rooms, holds them, optionally places bets, and reports delivery latency, bet latency and the
//! server's memory per connection.
//!
//! One process may hold only so many open files, so the coordinator spreads connections over
//! worker processes (re-executions of this binary) and merges their reports. Each worker binds
//! its sockets to several 127.0.0.x source addresses so one address's ephemeral ports are never
//! the limit.

mod args;
mod client;
mod coordinator;
mod error;
mod report;
mod worker;

pub use args::BenchArgs;
pub use coordinator::run;
pub use error::BenchError;
pub use report::Report;

/// `gameserver bench`: run, then print the merged report (workers print their own lines).
pub async fn main(args: BenchArgs) -> Result<(), String> {
    match run(&args).await.map_err(|e| e.to_string())? {
        Some(report) if args.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
        }
        Some(report) => print!("{}", report.to_text()),
        None => {}
    }
    Ok(())
}
