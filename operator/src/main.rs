//! `gamefleet-operator`: run the controller, or print the CRD.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
