//! `gameserver token`: mint a development player token.

use clap::Args;

use crate::auth::{mint_token_with, now_secs, Mint, MAX_TOKEN_AGE_SECS};

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
    /// `kid` header: the name of the key `--secret` is (gateways with named keys).
    #[arg(long)]
    pub kid: Option<String>,
    /// `aud` claim (gateways with --jwt-audience require it).
    #[arg(long)]
    pub audience: Option<String>,
    /// `iss` claim (gateways with --jwt-issuer require it).
    #[arg(long)]
    pub issuer: Option<String>,
}

pub fn run(args: &TokenArgs) -> Result<(), String> {
    let mint = Mint {
        kid: args.kid.clone(),
        audience: args.audience.clone(),
        issuer: args.issuer.clone(),
    };
    let token = mint_token_with(
        args.secret.as_bytes(),
        &mint,
        &args.user,
        now_secs(),
        args.ttl_secs,
    )
    .map_err(|e| format!("cannot mint a token: {e}"))?;
    println!("{token}");
    Ok(())
}
