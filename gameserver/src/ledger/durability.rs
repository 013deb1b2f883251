//! A ledger that cannot silently forget: the checks an engine makes of its ledger's Redis.
//!
//! - **Persistence at start.** A Redis without AOF loses every balance and pending bet when it
//!   restarts, and engines would carry on as if nothing happened. Engines refuse such a Redis
//!   unless told `--allow-ephemeral-ledger` (development).
//! - **Durable before acknowledged.** With `appendfsync always` every write is on disk before
//!   Redis answers. With `everysec` the last second can vanish on a host crash after the bus
//!   entries were acknowledged, so on Redis 7.2+ the engine waits with `WAITAOF` before each
//!   batch of acknowledgements; on older servers it warns.
//! - **Identity.** The ledger's data carries a marker (`<prefix>:ledger:identity`, a random id
//!   written once). Every ledger script requires the marker this engine started with; if it
//!   vanishes or changes (a Redis that lost or replaced its data) nothing is written and the
//!   engine halts bet intake until it comes back.
//!
//! The decisions are pure functions of what `INFO` says, unit-tested here; the Redis calls are
//! on [`RedisLedger`].

use clap::Args;

use super::error::LedgerError;
use super::redis::RedisLedger;

/// What the ledger's Redis says of its persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persistence {
    pub aof_enabled: bool,
    /// `appendfsync` (`always`, `everysec`, `no`), when the server lets us read it.
    pub fsync: Option<String>,
    /// `redis_version` as (major, minor).
    pub version: (u32, u32),
}

/// How the engine may use the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durability {
    /// Wait with `WAITAOF` before acknowledging bus entries.
    pub waitaof: bool,
    /// Something an operator should know (logged at start).
    pub warning: Option<String>,
}

/// Reads `field:value` lines of an `INFO` answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// What `INFO persistence` and `INFO server` (concatenated) say.
pub fn parse_info(info: &str, fsync: Option<String>) -> Persistence {
    let version = info_field(info, "redis_version")
        .map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
        })
        .unwrap_or((0, 0));
    Persistence {
        aof_enabled: info_field(info, "aof_enabled") == Some("1"),
        fsync,
        version,
    }
}

/// Whether an engine may run its ledger on this Redis, and how.
pub fn decide(p: &Persistence, allow_ephemeral: bool) -> Result<Durability, String> {
    if !p.aof_enabled {
        if allow_ephemeral {
            return Ok(Durability {
                waitaof: false,
                warning: Some(
                    "the ledger's Redis has no AOF persistence (allowed by \
                     --allow-ephemeral-ledger): a restart of it loses every balance and pending bet"
                        .into(),
                ),
            });
        }
        return Err(
            "the ledger's Redis runs without AOF persistence (appendonly no): a restart of it \
             would lose every balance and pending bet. Turn on `appendonly yes` \
             (`appendfsync always`, or `everysec` on Redis 7.2 or later), or pass \
             --allow-ephemeral-ledger (ALLOW_EPHEMERAL_LEDGER=true) for development"
                .into(),
        );
    }
    let waitaof = p.version >= (7, 2);
    let warning = match p.fsync.as_deref() {
        Some("always") => None,
        _ if waitaof => None,
        Some(policy) => Some(format!(
            "the ledger's Redis fsyncs its AOF with `{policy}` and has no WAITAOF (Redis {}.{} \
             < 7.2): a host crash can lose the last second of acknowledged bets; use \
             `appendfsync always`",
            p.version.0, p.version.1
        )),
        None => Some(
            "cannot read the ledger's Redis `appendfsync` policy (CONFIG GET refused) and it has \
             no WAITAOF: acknowledged bets are durable only if it is `always`"
                .into(),
        ),
    };
    Ok(Durability { waitaof, warning })
}

/// `gameserver ledger-init`: show the ledger's identity, or give it a new one.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// The ledger's Redis.
    #[arg(long, env = "LEDGER_REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    #[arg(long, env = "REDIS_PREFIX", default_value = "gf")]
    pub redis_prefix: String,
    /// Replace the identity marker with a new one. Only after deciding to go on with the data
    /// as it is now (e.g. an empty Redis after a loss): engines halted on the old identity stay
    /// halted until restarted, and the ones started afterwards run on the new one.
    #[arg(long)]
    pub new_identity: bool,
}

pub async fn run_init(args: InitArgs) -> Result<(), String> {
    let ledger =
        RedisLedger::connect(&args.redis_url, args.redis_prefix).map_err(|e| e.to_string())?;
    let id = if args.new_identity {
        ledger.replace_identity().await
    } else {
        ledger.ensure_identity().await.map(|(id, _)| id)
    }
    .map_err(|e| e.to_string())?;
    println!("{id}");
    Ok(())
}

/// A fresh identity value.
pub(crate) fn new_identity() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// How often (200 ms apart) a start-up re-reads shards that disagree before it refuses.
const IDENTITY_SETTLE_ATTEMPTS: u32 = 10;

/// The weakest of several nodes' persistence (a sharded ledger is as durable as its least
/// durable node): AOF only if all have it, the weakest fsync policy, the oldest version.
pub fn weakest(all: Vec<Persistence>) -> Option<Persistence> {
    fn rank(fsync: &Option<String>) -> u8 {
        match fsync.as_deref() {
            Some("always") => 3,
            Some("everysec") => 2,
            None => 1,
            Some(_) => 0,
        }
    }
    all.into_iter().reduce(|a, b| Persistence {
        aof_enabled: a.aof_enabled && b.aof_enabled,
        fsync: if rank(&b.fsync) < rank(&a.fsync) {
            b.fsync
        } else {
            a.fsync
        },
        version: a.version.min(b.version),
    })
}

impl RedisLedger {
    /// What the ledger's Redis says of its persistence (of each node holding a shard, the
    /// weakest).
    pub async fn persistence(&self) -> Result<Persistence, LedgerError> {
        let shards: Vec<Option<u16>> = if self.layout().is_sharded() {
            self.layout().all().map(Some).collect()
        } else {
            vec![None]
        };
        let mut all = Vec::with_capacity(shards.len());
        for shard in shards {
            all.push(self.node_persistence(shard).await?);
        }
        weakest(all).ok_or_else(|| LedgerError::Unavailable("no ledger node".into()))
    }

    async fn node_persistence(&self, shard: Option<u16>) -> Result<Persistence, LedgerError> {
        let info = |section: &str| {
            let mut c = redis::cmd("INFO");
            c.arg(section);
            c
        };
        let persistence: String = self.query_on(shard, &info("persistence")).await?;
        let server: String = self.query_on(shard, &info("server")).await?;
        // Managed Redis often refuses CONFIG; the policy is then unknown.
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("appendfsync");
        let fsync: Option<String> = self
            .query_on::<Vec<String>>(shard, &config)
            .await
            .ok()
            .and_then(|v| v.get(1).cloned());
        Ok(parse_info(&format!("{persistence}\n{server}"), fsync))
    }

    /// The identity marker, written now if the ledger has none; `true` if it was created.
    /// A sharded ledger has one marker per shard, all equal: when some shards hold it and
    /// others not, those lost their data (or a first start was cut short) and nothing is
    /// written until `ledger-init --new-identity` decides.
    pub async fn ensure_identity(&self) -> Result<(String, bool), LedgerError> {
        self.ensure_shard_count().await?;
        let found = self.shard_identities().await?;
        let created = if found.iter().all(Option::is_none) {
            // Shard 0's marker is the one every other shard copies, so engines starting at
            // the same time agree on it.
            let created = self.set_identity(0, &new_identity(), true).await?;
            let canonical = self.shard_identities().await?.into_iter().next().flatten();
            let canonical = canonical.ok_or_else(|| {
                LedgerError::IdentityLost("the identity marker vanished as it was read".into())
            })?;
            for shard in self.layout().all().skip(1) {
                self.set_identity(shard, &canonical, true).await?;
            }
            created
        } else {
            false
        };
        // Another engine starting at the same time may be between its shards: it finishes
        // within milliseconds, a shard that lost its data stays without.
        let mut attempts = 0;
        loop {
            let found = self.shard_identities().await?;
            match agreed_identity(&found) {
                Ok(id) => return Ok((id.to_owned(), created)),
                Err(_) if attempts < IDENTITY_SETTLE_ATTEMPTS => attempts += 1,
                Err(why) => return Err(LedgerError::IdentityLost(why)),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// A sharded ledger records its shard count once; an engine configured with another
    /// count would look for money in the wrong shards, so it is refused.
    async fn ensure_shard_count(&self) -> Result<(), LedgerError> {
        if !self.layout().is_sharded() {
            return Ok(());
        }
        let key = self.layout().key(0, "ledger:shards");
        let shards = self.layout().shards();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(shards)
            .arg("NX")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let stored: Option<u16> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.connection())
            .await
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        match stored {
            Some(n) if n == shards => Ok(()),
            other => Err(LedgerError::Corrupt(format!(
                "{key} says the ledger has {other:?} shards, this engine uses {shards}"
            ))),
        }
    }

    /// The identity marker as it is now (the first shard's; see [`Self::ensure_identity`]).
    pub async fn current_identity(&self) -> Result<Option<String>, LedgerError> {
        Ok(self.shard_identities().await?.into_iter().next().flatten())
    }

    /// Writes a new identity marker, in every shard (see [`InitArgs::new_identity`]).
    pub async fn replace_identity(&self) -> Result<String, LedgerError> {
        let fresh = new_identity();
        self.ensure_shard_count().await?;
        for shard in self.layout().all() {
            self.set_identity(shard, &fresh, false).await?;
        }
        Ok(fresh)
    }

    /// Writes `shard`'s marker (only if it has none, with `nx`); whether it was written.
    async fn set_identity(&self, shard: u16, value: &str, nx: bool) -> Result<bool, LedgerError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.shard_identity_key(shard)).arg(value);
        if nx {
            cmd.arg("NX");
        }
        let set: Option<String> = cmd
            .query_async(&mut self.connection())
            .await
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        Ok(set.is_some())
    }
}

/// The one identity every shard holds, or which shards disagree.
pub fn agreed_identity(found: &[Option<String>]) -> Result<&str, String> {
    let Some(Some(first)) = found.first() else {
        return Err("shard 0 holds no identity marker".into());
    };
    let odd: Vec<String> = found
        .iter()
        .enumerate()
        .filter(|(_, f)| f.as_ref() != Some(first))
        .map(|(shard, f)| format!("shard {shard} holds {f:?}"))
        .collect();
    if odd.is_empty() {
        Ok(first)
    } else {
        Err(format!(
            "the shards disagree: shard 0 holds {first:?}, {}",
            odd.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str =
        "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n\
                        # Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";

    fn p(aof: bool, fsync: Option<&str>, version: (u32, u32)) -> Persistence {
        Persistence {
            aof_enabled: aof,
            fsync: fsync.map(str::to_owned),
            version,
        }
    }

    #[test]
    fn a_sharded_ledger_is_as_durable_as_its_weakest_node() {
        let w = weakest(vec![
            p(true, Some("always"), (7, 2)),
            p(true, Some("everysec"), (7, 0)),
            p(true, Some("always"), (7, 4)),
        ])
        .unwrap();
        assert_eq!(w, p(true, Some("everysec"), (7, 0)));
        let w = weakest(vec![
            p(true, Some("always"), (7, 2)),
            p(false, None, (7, 2)),
        ])
        .unwrap();
        assert!(!w.aof_enabled);
        assert_eq!(w.fsync, None);
        assert_eq!(weakest(Vec::new()), None);
    }

    #[test]
    fn every_shard_must_hold_the_same_identity() {
        let id = |s: &str| Some(s.to_owned());
        assert_eq!(agreed_identity(&[id("a"), id("a")]), Ok("a"));
        let e = agreed_identity(&[id("a"), None, id("b")]).unwrap_err();
        assert!(
            e.contains("shard 1 holds None") && e.contains("shard 2"),
            "{e}"
        );
        assert!(agreed_identity(&[None, id("a")]).is_err());
        assert!(agreed_identity(&[]).is_err());
    }

    #[test]
    fn info_is_read_field_by_field() {
        assert_eq!(
            parse_info(INFO, Some("always".into())),
            p(true, Some("always"), (7, 0))
        );
        let off = INFO.replace("aof_enabled:1", "aof_enabled:0");
        assert!(!parse_info(&off, None).aof_enabled);
        assert_eq!(parse_info("redis_version:7.2.4\n", None).version, (7, 2));
        assert_eq!(parse_info("nothing", None), p(false, None, (0, 0)));
    }

    #[test]
    fn a_ledger_without_aof_is_refused_unless_allowed() {
        let e = decide(&p(false, None, (7, 0)), false).unwrap_err();
        assert!(
            e.contains("appendonly no") && e.contains("--allow-ephemeral-ledger"),
            "{e}"
        );
        let d = decide(&p(false, None, (7, 0)), true).unwrap();
        assert!(!d.waitaof);
        assert!(d.warning.unwrap().contains("restart"));
    }

    #[test]
    fn waitaof_is_used_where_the_server_has_it() {
        assert_eq!(
            decide(&p(true, Some("everysec"), (7, 2)), false).unwrap(),
            Durability {
                waitaof: true,
                warning: None
            }
        );
        assert!(
            decide(&p(true, Some("always"), (8, 0)), false)
                .unwrap()
                .waitaof
        );
    }

    #[test]
    fn everysec_without_waitaof_is_warned_about_and_always_is_not() {
        let d = decide(&p(true, Some("everysec"), (7, 0)), false).unwrap();
        assert!(!d.waitaof);
        assert!(d.warning.unwrap().contains("appendfsync always"));
        assert_eq!(
            decide(&p(true, Some("always"), (7, 0)), false).unwrap(),
            Durability {
                waitaof: false,
                warning: None
            }
        );
        assert!(decide(&p(true, None, (6, 2)), false)
            .unwrap()
            .warning
            .is_some());
    }
}
