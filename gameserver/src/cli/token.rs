//! `gameserver token`: mint a development player token.

use clap::Args;

use crate::auth::{mint_token, now_secs, MAX_TOKEN_AGE_SECS};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The `userId` claim.
    #[arg(long)]
    pub user: String,
    /// HS256 secret shared with the gateways.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Lifetime in seconds (gateways accept a token for at most 300 s after issue anyway).
    #[arg(long, default_value_t = MAX_TOKEN_AGE_SECS)]
    pub ttl_secs: u64,
}

pub fn run(args: &TokenArgs) -> Result<(), String> {
    let token = mint_token(
        args.secret.as_bytes(),
        &args.user,
        now_secs(),
        args.ttl_secs,
    )
    .map_err(|e| format!("cannot mint a token: {e}"))?;
    println!("{token}");
    Ok(())
}
