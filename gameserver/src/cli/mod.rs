//! The `gameserver` command line.

pub mod args;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "gameserver",
    version,
    about = "Real-time dice wagering backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gateway + engine in one process (in-memory bus and ledger) with the dice page.
    Local(crate::local::LocalArgs),
    /// Mint a development player token (HS256 JWT).
    Token(token::TokenArgs),
    /// Re-derive a round's roll from its revealed seeds and check the commitment.
    Verify(crate::game::verify::VerifyArgs),
    /// Load generator: hold many authenticated connections, bet, report latency and memory.
    Bench(crate::bench::BenchArgs),
    /// A gateway process on the Redis bus (players connect here).
    Gateway(crate::distributed::GatewayCmdArgs),
    /// An engine process on the Redis bus (runs rounds, owns the ledger operations).
    Engine(crate::distributed::EngineCmdArgs),
    /// Move audit-log entries older than --keep-seconds out of Redis into a JSON-lines file.
    LedgerArchive(crate::ledger::archive::ArchiveArgs),
    /// Print the ledger's identity marker (written if absent), or replace it (--new-identity).
    LedgerInit(crate::ledger::durability::InitArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Verify(args) => return crate::game::verify::run(args),
        Command::Token(args) => token::run(&args),
        Command::Local(args) => block_on(crate::local::run(args)),
        // A bench worker runs its share of the players on one thread: the load generator
        // scales by worker processes, and one thread per process spares it the work stealing
        // and cross-thread wake-ups that cost the servers it measures CPU.
        Command::Bench(args) if args.worker_index.is_some() => {
            block_on_one_thread(crate::bench::main(args))
        }
        Command::Bench(args) => block_on(crate::bench::main(args)),
        Command::Gateway(args) => block_on(crate::distributed::run_gateway(args)),
        Command::Engine(args) => block_on(crate::distributed::run_engine(args)),
        Command::LedgerArchive(args) => block_on(crate::ledger::archive::run(args)),
        Command::LedgerInit(args) => block_on(crate::ledger::durability::run_init(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gameserver: {message}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(f: F) -> Result<(), String> {
    run_on(tokio::runtime::Builder::new_multi_thread(), f)
}

fn block_on_one_thread<F: std::future::Future<Output = Result<(), String>>>(
    f: F,
) -> Result<(), String> {
    run_on(tokio::runtime::Builder::new_current_thread(), f)
}

fn run_on<F: std::future::Future<Output = Result<(), String>>>(
    mut runtime: tokio::runtime::Builder,
    f: F,
) -> Result<(), String> {
    runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(f)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
