//! Moving old audit entries out of Redis: `gameserver ledger-archive`.
//!
//! The audit stream (`ledger:log`) gains about 1.5 entries per bet and Redis keeps it in memory.
//! The archiver appends the entries older than `--keep-seconds` to a JSON-lines file (one
//! [`Entry`] per line, in sequence order, the same shape as `GET /admin/ledger/entries`),
//! makes the file durable (`fsync`), and only then trims those entries from Redis. Run it
//! periodically (a CronJob with a volume); each run continues where the last one stopped.
//!
//! Nothing is lost or written twice, even when a run is killed:
//! * killed before the `fsync`: the entries are still in Redis and the next run writes them
//!   again after dropping the torn last line (if any);
//! * killed between the `fsync` and the trim: the next run starts after the file's last entry
//!   and trims through it first.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::error::LedgerError;
use super::redis::RedisLedger;
use super::types::Entry;
use crate::cli::args::Secret;
use crate::clock::now_ms;

/// Bytes read from the end of the file to find its last entry (entries are far shorter).
const TAIL: u64 = 64 * 1024;

#[derive(Args, Debug, Clone)]
pub struct ArchiveArgs {
    /// Redis holding the ledger.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Secret,
    /// Key prefix of the fleet (as given to its engines).
    #[arg(long, env = "REDIS_PREFIX", default_value = "gf")]
    pub redis_prefix: String,
    /// The archive: a JSON-lines file, created if missing, appended to.
    #[arg(long)]
    pub out: PathBuf,
    /// Entries younger than this stay in Redis (and in `GET /admin/ledger/entries`), seconds.
    #[arg(long, default_value_t = 86_400)]
    pub keep_seconds: u64,
    /// Entries moved per step (1–10000): one read, one write + fsync, one trim.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    BadArchive { path: String, what: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries appended to the file by this run.
    pub archived: u64,
    /// Sequence numbers of the first and last entry appended.
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Redis holds no entry up to this sequence number.
    pub archived_through: u64,
    /// A torn last line (a run killed mid-write) was dropped from the file.
    pub repaired: bool,
}

/// Wraps an I/O error with the archive's path.
fn io_error(path: &str) -> impl Fn(std::io::Error) -> ArchiveError + Copy + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How the end of an archive file looks: the length of its complete lines and the last
/// complete entry. `tail` is the file's last bytes, `tail_start` their offset in the file.
pub fn scan_tail(tail: &[u8], tail_start: u64) -> Result<(u64, Option<Entry>), String> {
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        if tail_start > 0 {
            return Err(format!("no line end in the last {} bytes", tail.len()));
        }
        // Only a torn first line (or nothing).
        return Ok((0, None));
    };
    let line_start = tail[..end].iter().rposition(|&b| b == b'\n').map(|i| i + 1);
    let line_start = match line_start {
        Some(i) => i,
        None if tail_start == 0 => 0,
        None => return Err(format!("a line longer than {} bytes", tail.len())),
    };
    let line = &tail[line_start..end];
    let entry: Entry = serde_json::from_slice(line)
        .map_err(|e| format!("last line is not a ledger entry ({e})"))?;
    Ok((tail_start + end as u64 + 1, Some(entry)))
}

/// How many of `entries` (oldest first) are old enough to leave Redis: recorded at or
/// before `horizon_ms`. Stops at the first younger one so the archive stays in order.
pub fn old_enough(entries: &[Entry], horizon_ms: u64) -> usize {
    entries
        .iter()
        .position(|e| e.at_ms > horizon_ms)
        .unwrap_or(entries.len())
}

/// Open (or create) the archive, drop a torn last line, and return it positioned at its end
/// with its last entry's sequence number.
fn open_archive(path: &Path) -> Result<(File, Option<u64>, bool), ArchiveError> {
    let shown = path.display().to_string();
    let io = io_error(&shown);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail).map_err(io)?;
    let (complete, last) = scan_tail(&tail, start).map_err(|what| ArchiveError::BadArchive {
        path: shown.clone(),
        what,
    })?;
    let repaired = complete < len;
    if repaired {
        tracing::warn!(path = %shown, dropped = len - complete, "dropping a torn last line");
        file.set_len(complete).map_err(io)?;
        file.sync_data().map_err(io)?;
    }
    file.seek(SeekFrom::End(0)).map_err(io)?;
    Ok((file, last.map(|e| e.seq), repaired))
}

/// Move every entry recorded at or before `horizon_ms` from the ledger's audit stream to the
/// file at `path`, `batch` entries per step.
pub async fn archive(
    ledger: &RedisLedger,
    path: &Path,
    horizon_ms: u64,
    batch: usize,
) -> Result<Summary, ArchiveError> {
    if ledger.shard_count() > 1 {
        return Err(ArchiveError::Ledger(LedgerError::Unsupported(format!(
            "a sharded ledger has {} audit streams: archive them with archive_shards (one file each)",
            ledger.shard_count()
        ))));
    }
    archive_shard(ledger, 0, path, horizon_ms, batch).await
}

/// Every shard's audit stream to a file of its own: `path` itself on a single Redis, else
/// [`shard_path`] for each shard (sequence numbers count per shard, so each file keeps its
/// shard's cursor, with the same guarantees as [`archive`]). A shard that fails stops the run;
/// the shards before it are done and the next run continues each where it stopped.
pub async fn archive_shards(
    ledger: &RedisLedger,
    path: &Path,
    horizon_ms: u64,
    batch: usize,
) -> Result<Vec<(PathBuf, Summary)>, ArchiveError> {
    let shards = ledger.shard_count();
    let mut out = Vec::with_capacity(usize::from(shards));
    for shard in 0..shards {
        let file = if shards == 1 {
            path.to_path_buf()
        } else {
            shard_path(path, shard)
        };
        let summary = archive_shard(ledger, shard, &file, horizon_ms, batch).await?;
        out.push((file, summary));
    }
    Ok(out)
}

/// The archive file of one shard: `ledger.jsonl` → `ledger.shard-03.jsonl` beside it.
pub fn shard_path(path: &Path, shard: u16) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.shard-{shard:02}.{}", ext.to_string_lossy()),
        None => format!("{stem}.shard-{shard:02}"),
    };
    path.with_file_name(name)
}

async fn archive_shard(
    ledger: &RedisLedger,
    shard: u16,
    path: &Path,
    horizon_ms: u64,
    batch: usize,
) -> Result<Summary, ArchiveError> {
    let shown = path.display().to_string();
    let io = io_error(&shown);
    let (file, file_last, repaired) = open_archive(path)?;
    let mut summary = Summary {
        repaired,
        archived_through: ledger.shard_archived_through(shard).await?,
        ..Summary::default()
    };
    if let Some(last) = file_last {
        if last > summary.archived_through {
            // A previous run wrote these but did not get to trim them.
            summary.archived_through = ledger
                .trim_shard_entries(shard, last)
                .await?
                .archived_through;
        } else if last < summary.archived_through {
            tracing::warn!(
                file_last = last,
                archived_through = summary.archived_through,
                "entries after this file's last one were archived elsewhere; continuing after them"
            );
        }
    }
    let mut after = summary.archived_through;
    let mut out = BufWriter::new(file);
    loop {
        let entries = ledger.shard_log(shard, after, batch).await?;
        let n = old_enough(&entries, horizon_ms);
        if n == 0 {
            break;
        }
        for e in &entries[..n] {
            serde_json::to_writer(&mut out, e).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
        out.get_ref().sync_data().map_err(io)?;
        let (first, last) = (entries[0].seq, entries[n - 1].seq);
        summary.first.get_or_insert(first);
        summary.last = Some(last);
        summary.archived += n as u64;
        summary.archived_through = ledger
            .trim_shard_entries(shard, last)
            .await?
            .archived_through;
        after = last;
        if n < entries.len() || entries.len() < batch {
            break;
        }
    }
    Ok(summary)
}

/// `gameserver ledger-archive`.
pub async fn run(args: ArchiveArgs) -> Result<(), String> {
    let url = crate::distributed::redis_url(Some(&args.redis_url))?;
    if !(1..=10_000).contains(&args.batch) {
        return Err(format!(
            "--batch must be between 1 and 10000, got {}",
            args.batch
        ));
    }
    let keep = Duration::from_secs(args.keep_seconds).as_millis() as u64;
    let ledger =
        RedisLedger::connect(&url, args.redis_prefix.clone()).map_err(|e| e.to_string())?;
    let horizon = now_ms().saturating_sub(keep);
    let done = archive_shards(&ledger, &args.out, horizon, args.batch)
        .await
        .map_err(|e| e.to_string())?;
    for (file, s) in &done {
        match (s.first, s.last) {
            (Some(first), Some(last)) => println!(
                "archived {} entries (seq {first}..={last}) to {}; Redis keeps the entries after {}",
                s.archived,
                file.display(),
                s.archived_through
            ),
            _ => println!(
                "{}: nothing older than {} s to archive; Redis keeps the entries after {}",
                file.display(),
                args.keep_seconds,
                s.archived_through
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::EntryKind;

    fn entry(seq: u64, at_ms: u64) -> Entry {
        Entry {
            seq,
            key: format!("k{seq}"),
            kind: EntryKind::Deposit,
            from: "treasury".into(),
            to: "user:a".into(),
            amount: 5,
            from_balance: -5,
            to_balance: 5,
            at_ms,
            memo: String::new(),
            shard: 0,
        }
    }

    fn line(seq: u64) -> String {
        format!("{}\n", serde_json::to_string(&entry(seq, 1)).unwrap())
    }

    #[test]
    fn each_shard_has_a_file_beside_the_given_one() {
        let p = Path::new("/data/ledger.jsonl");
        assert_eq!(shard_path(p, 3), Path::new("/data/ledger.shard-03.jsonl"));
        assert_eq!(shard_path(p, 15), Path::new("/data/ledger.shard-15.jsonl"));
        assert_eq!(
            shard_path(Path::new("audit"), 0),
            Path::new("audit.shard-00")
        );
    }

    #[test]
    fn the_tail_gives_the_last_complete_entry() {
        assert_eq!(scan_tail(b"", 0), Ok((0, None)));
        let two = format!("{}{}", line(1), line(2));
        let (len, last) = scan_tail(two.as_bytes(), 0).unwrap();
        assert_eq!(len, two.len() as u64);
        assert_eq!(last.map(|e| e.seq), Some(2));
        // A torn line after the last complete one is not part of the file's length.
        let torn = format!("{two}{{\"seq\":3,\"ke");
        let (len, last) = scan_tail(torn.as_bytes(), 0).unwrap();
        assert_eq!(len, two.len() as u64);
        assert_eq!(last.map(|e| e.seq), Some(2));
        // Only a torn first line: nothing complete.
        assert_eq!(scan_tail(b"{\"seq\":1", 0), Ok((0, None)));
        // Read from an offset: lengths count from the file's start.
        let (len, last) = scan_tail(format!("xx\n{}", line(7)).as_bytes(), 100).unwrap();
        assert_eq!(len, 100 + 3 + line(7).len() as u64);
        assert_eq!(last.map(|e| e.seq), Some(7));
    }

    #[test]
    fn a_tail_that_is_not_an_archive_is_refused() {
        assert!(scan_tail(b"hello\n", 0)
            .unwrap_err()
            .contains("not a ledger entry"));
        assert!(scan_tail(b"no line end", 10)
            .unwrap_err()
            .contains("no line end"));
        assert!(scan_tail(b"x\n", 10).unwrap_err().contains("longer than"));
    }

    #[test]
    fn only_entries_up_to_the_horizon_leave_and_in_order() {
        let es = [entry(1, 10), entry(2, 20), entry(3, 30)];
        assert_eq!(old_enough(&es, 5), 0);
        assert_eq!(old_enough(&es, 20), 2);
        assert_eq!(old_enough(&es, 99), 3);
        assert_eq!(old_enough(&[], 99), 0);
        // A younger entry ahead of older ones (clocks of two engines) stops the step there.
        let skewed = [entry(1, 10), entry(2, 40), entry(3, 30)];
        assert_eq!(old_enough(&skewed, 35), 1);
    }
}
