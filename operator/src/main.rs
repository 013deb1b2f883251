//! `gamefleet-operator`: run the controller, or print the CRD.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gamefleet_operator::autoscale::{Autoscaler, AutoscalerConfig};
use gamefleet_operator::leader::LeaseConfig;
use gamefleet_operator::runtime::{self, RunConfig};

#[derive(Parser)]
#[command(
    name = "gamefleet-operator",
    version,
    about = "Kubernetes operator for GameFleet game backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller with its /metrics, /healthz and /readyz endpoints.
    Run(RunArgs),
    /// Print the GameFleet CustomResourceDefinition as YAML.
    Crd,
    /// Print the objects the operator would create for the GameFleets in a manifest (offline).
    #[command(hide = true)]
    Render {
        /// Manifest with one or more GameFleet documents (other kinds are skipped).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Elect a leader through a Lease, so several replicas can run (only the leader reconciles).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "gamefleet-operator")]
    lease_name: String,
    /// Namespace of the Lease (normally the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_duration_seconds: u64,
    /// Seconds between renewals (must be below the lease duration).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    renew_interval_seconds: u64,
    /// This replica's identity in the Lease and in events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Only manage GameFleets in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Timeout of one pod /metrics scrape by the autoscaler, in milliseconds.
    #[arg(long, env = "SCRAPE_TIMEOUT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=60000))]
    scrape_timeout_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Crd => match gamefleet_operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot serialize the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Render { file } => {
            let yaml = match std::fs::read_to_string(&file) {
                Ok(y) => y,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            match gamefleet_operator::render::render(&yaml) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if args.renew_interval_seconds >= args.lease_duration_seconds {
        eprintln!(
            "error: --renew-interval-seconds ({}) must be below --lease-duration-seconds ({})",
            args.renew_interval_seconds, args.lease_duration_seconds
        );
        return ExitCode::FAILURE;
    }
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let cfg = RunConfig {
        metrics_listen: args.metrics_listen,
        lease: args.leader_election.then(|| LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(args.lease_duration_seconds),
            renew_interval: Duration::from_secs(args.renew_interval_seconds),
        }),
        namespace: args.namespace.clone(),
        identity,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let client = match kube::Client::try_default().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "error: cannot configure the Kubernetes client (KUBECONFIG or in-cluster): {e}"
                );
                return ExitCode::FAILURE;
            }
        };
        let autoscaler = Arc::new(Autoscaler::new(AutoscalerConfig {
            scrape_timeout: Duration::from_millis(args.scrape_timeout_ms),
        }));
        match runtime::run_with(client, cfg, autoscaler, shutdown_signal(), |_| {}).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGTERM (pod deletion) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "gamefleet-operator".into());
    format!("{host}-{}", std::process::id())
}
