//! `gameserver verify`: re-derive a round's roll from its revealed data and check the commitment.

use std::process::ExitCode;

use super::fairness::{self, ClientSeedMix};
use super::rules::{format_hundredths, parse_hundredths};

/// Re-derive a round's roll from the revealed server seed, the client seeds and the nonce.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct VerifyArgs {
    /// Revealed server seed (64 hex characters, from `dice_rolled.data.serverSeed`).
    #[arg(long)]
    pub server_seed: String,
    /// Commitment published when the round opened (`round_started.data.commitment`).
    #[arg(long)]
    pub commitment: Option<String>,
    /// A client seed of the round; repeat for each (order does not matter).
    #[arg(long = "client-seed")]
    pub client_seeds: Vec<String>,
    /// The round's client seed mix, instead of (or to check against) the individual seeds.
    #[arg(long)]
    pub client_seed_mix: Option<String>,
    /// Round nonce (`data.nonce`).
    #[arg(long)]
    pub nonce: u64,
    /// The roll the server announced (e.g. 42.17), to compare with.
    #[arg(long)]
    pub roll: Option<String>,
}

/// What verification found. `ok()` is false if any supplied claim does not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub roll: u32,
    pub client_seed_mix: String,
    /// `None` when no commitment was given.
    pub commitment_ok: Option<bool>,
    /// `None` when no mix was given alongside seeds.
    pub mix_ok: Option<bool>,
    /// `None` when no roll was claimed.
    pub roll_ok: Option<bool>,
}

impl Report {
    pub fn ok(&self) -> bool {
        [self.commitment_ok, self.mix_ok, self.roll_ok]
            .iter()
            .all(|c| c.unwrap_or(true))
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("--server-seed must not be empty")]
    EmptySeed,
    #[error("--roll must be a number 0.00-99.99 with at most two decimals, got {0:?}")]
    BadRoll(String),
}

/// Pure verification (no printing).
pub fn verify(args: &VerifyArgs) -> Result<Report, VerifyError> {
    if args.server_seed.is_empty() {
        return Err(VerifyError::EmptySeed);
    }
    let claimed_roll = match &args.roll {
        Some(r) => Some(parse_hundredths(r).ok_or_else(|| VerifyError::BadRoll(r.clone()))?),
        None => None,
    };
    let from_seeds = ClientSeedMix::new(args.client_seeds.iter().cloned()).mix;
    let (mix, mix_ok) = match (&args.client_seed_mix, args.client_seeds.is_empty()) {
        (Some(given), true) => (given.to_ascii_lowercase(), None),
        (Some(given), false) => (
            from_seeds.clone(),
            Some(given.eq_ignore_ascii_case(&from_seeds)),
        ),
        (None, _) => (from_seeds, None),
    };
    let roll = fairness::roll(&args.server_seed, &mix, args.nonce);
    Ok(Report {
        roll,
        client_seed_mix: mix,
        commitment_ok: args
            .commitment
            .as_ref()
            .map(|c| c.eq_ignore_ascii_case(&fairness::commitment(&args.server_seed))),
        mix_ok,
        roll_ok: claimed_roll.map(|c| c == roll),
    })
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "OK",
        Some(false) => "MISMATCH",
        None => "not checked",
    }
}

/// Human-readable lines for a report.
pub fn render(args: &VerifyArgs, report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "commitment  SHA-256(serverSeed) = {}  [{}]\n",
        fairness::commitment(&args.server_seed),
        verdict(report.commitment_ok)
    ));
    out.push_str(&format!(
        "client seed mix = {}  [{}]\n",
        report.client_seed_mix,
        verdict(report.mix_ok)
    ));
    out.push_str(&format!(
        "roll = {} (HMAC-SHA256(serverSeed, \"<mix>:{}\"))  [{}]\n",
        format_hundredths(report.roll),
        args.nonce,
        verdict(report.roll_ok)
    ));
    out.push_str(if report.ok() {
        "VERIFIED: the round is consistent with its commitment\n"
    } else {
        "FAILED: the revealed data does not match the claims above\n"
    });
    out
}

/// Entry point of the `verify` subcommand: prints the verdict, exit code 0 only if verified.
pub fn run(args: VerifyArgs) -> ExitCode {
    match verify(&args) {
        Ok(report) => {
            print!("{}", render(&args, &report));
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "3f9d2c1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a0f9e8d7c6";
    const COMMIT: &str = "ea9b44f349cb2479c78e44629fe5e62b8542521b1089a1f65d088ca5b4243719";

    fn args() -> VerifyArgs {
        VerifyArgs {
            server_seed: SEED.into(),
            commitment: Some(COMMIT.into()),
            client_seeds: vec!["bob".into(), "alice".into()],
            client_seed_mix: None,
            nonce: 42,
            roll: Some("46.16".into()),
        }
    }

    #[test]
    fn verifies_a_consistent_round() {
        let r = verify(&args()).unwrap();
        assert_eq!(r.roll, 4616);
        assert!(r.ok());
        assert!(render(&args(), &r).contains("VERIFIED"));
    }

    #[test]
    fn detects_each_mismatch() {
        let mut a = args();
        a.commitment = Some("00".repeat(32));
        assert_eq!(verify(&a).unwrap().commitment_ok, Some(false));
        let mut a = args();
        a.roll = Some("46.17".into());
        let r = verify(&a).unwrap();
        assert!(!r.ok());
        assert!(render(&a, &r).contains("FAILED"));
        let mut a = args();
        a.client_seed_mix = Some("ab".into());
        assert_eq!(verify(&a).unwrap().mix_ok, Some(false));
        let mut a = args();
        a.client_seeds.clear();
        a.client_seed_mix = Some(ClientSeedMix::new(["alice", "bob"]).mix);
        assert!(verify(&a).unwrap().ok());
    }

    #[test]
    fn rejects_bad_input() {
        let mut a = args();
        a.roll = Some("4616".into());
        assert_eq!(verify(&a), Err(VerifyError::BadRoll("4616".into())));
        let mut a = args();
        a.server_seed.clear();
        assert_eq!(verify(&a), Err(VerifyError::EmptySeed));
    }
}
