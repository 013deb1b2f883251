//! `kubesim up --kubeconfig <path>`: a local simulated cluster until interrupted.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kubesim",
    about = "A simulated Kubernetes cluster for tests and demos (not a Kubernetes distribution)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster, write a kubeconfig and serve until SIGINT/SIGTERM.
    Up {
        /// Where to write the kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// API server port (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Extra image mappings, `repository-suffix=/path/to/binary` (repeatable).
        #[arg(long = "image", value_name = "SUFFIX=BINARY")]
        images: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kubesim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Up {
            kubeconfig,
            port,
            images,
        } => {
            let mut config = kubesim::ClusterConfig::default()
                .kubeconfig(&kubeconfig)
                .port(port);
            for m in images {
                let Some((suffix, bin)) = m.split_once('=') else {
                    eprintln!("kubesim: --image expects SUFFIX=BINARY, got {m:?}");
                    return std::process::ExitCode::from(2);
                };
                config = config.image(suffix, bin);
            }
            let cluster = match kubesim::Cluster::start(config).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kubesim: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            println!("kubesim API server listening on {}", cluster.api_url());
            println!("kubeconfig written to {}", kubeconfig.display());
            println!(
                "try: KUBECONFIG={} kubectl get namespaces",
                kubeconfig.display()
            );
            wait_for_signal().await;
            println!("kubesim: stopping");
            cluster.shutdown().await;
            std::process::ExitCode::SUCCESS
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
