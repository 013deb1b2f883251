//! Archiving the audit stream (`gameserver ledger-archive`) against a real redis-server: every
//! entry ends up exactly once in the file or in Redis, whatever happens between the steps.

// Only its deposit and total helpers are used here.
#[allow(dead_code)]
mod ledger_suite;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gameserver::clock::now_ms;
use gameserver::ledger::archive::{archive, Summary};
use gameserver::ledger::{Entry, Ledger, LedgerError, RedisLedger};
use ledger_suite::{deposit, total};
use support::RedisServer;

async fn deposits(l: &RedisLedger, from: u32, to: u32) -> Vec<Entry> {
    let mut out = Vec::new();
    for i in from..to {
        out.push(
            l.transfer(&deposit("a", 10, &format!("d{i}")))
                .await
                .unwrap()
                .entry,
        );
    }
    out
}

/// The sequence numbers in an archive file, each line parsed as an entry.
fn archived(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Entry>(l).unwrap().seq)
        .collect()
}

async fn in_redis(l: &RedisLedger) -> Vec<u64> {
    l.entries(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// `ledger.jsonl` in a directory of its own, removed with it.
struct TempArchive {
    dir: PathBuf,
    path: PathBuf,
}

impl TempArchive {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gameserver-archive-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        Self { dir, path }
    }
}

impl Drop for TempArchive {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn old_entries_move_to_the_file_once_and_young_ones_stay() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "a1").unwrap();
    let archive_file = TempArchive::new("old");
    let file = archive_file.path.clone();
    let old = deposits(&l, 0, 5).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    deposits(&l, 5, 8).await;
    let horizon = old.iter().map(|e| e.at_ms).max().unwrap();

    let s = archive(&l, &file, horizon, 2).await.unwrap();
    assert_eq!(
        s,
        Summary {
            archived: 5,
            first: Some(1),
            last: Some(5),
            archived_through: 5,
            repaired: false
        }
    );
    assert_eq!(archived(&file), [1, 2, 3, 4, 5]);
    assert_eq!(in_redis(&l).await, [6, 7, 8]);
    assert_eq!(l.archived_through().await.unwrap(), 5);
    // The archived lines are the entries as recorded.
    let first: Entry = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first, old[0]);
    // Balances and idempotency do not depend on the log.
    assert_eq!(l.balance("user:a").await.unwrap(), 80);
    let again = l.transfer(&deposit("a", 10, "d0")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.entry, old[0]);

    // The next run continues: everything up to now, then nothing more.
    let s = archive(&l, &file, now_ms(), 1_000).await.unwrap();
    assert_eq!((s.archived, s.first, s.last), (3, Some(6), Some(8)));
    assert_eq!(archived(&file), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(in_redis(&l).await.is_empty());
    let s = archive(&l, &file, now_ms(), 1_000).await.unwrap();
    assert_eq!((s.archived, s.archived_through), (0, 8));
    // New entries keep their numbering after a trim.
    let next = deposits(&l, 8, 9).await;
    assert_eq!(next[0].seq, 9);
    assert_eq!(in_redis(&l).await, [9]);
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_and_written_again() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "a2").unwrap();
    let archive_file = TempArchive::new("torn");
    let file = archive_file.path.clone();
    deposits(&l, 0, 3).await;
    archive(&l, &file, now_ms(), 1_000).await.unwrap();
    deposits(&l, 3, 6).await;
    // A run killed mid-write (before its fsync and trim) left half a line.
    let entries = l.entries(0, 10).await.unwrap();
    let half = serde_json::to_string(&entries[0]).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&half.as_bytes()[..half.len() / 2])
        .unwrap();

    let s = archive(&l, &file, now_ms(), 1_000).await.unwrap();
    assert!(s.repaired);
    assert_eq!((s.archived, s.first, s.last), (3, Some(4), Some(6)));
    assert_eq!(archived(&file), [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_run_killed_before_its_trim_is_finished_by_the_next() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "a3").unwrap();
    let archive_file = TempArchive::new("untrimmed");
    let file = archive_file.path.clone();
    deposits(&l, 0, 4).await;
    // Written and synced, never trimmed.
    let mut text = String::new();
    for e in l.entries(0, 2).await.unwrap() {
        text.push_str(&serde_json::to_string(&e).unwrap());
        text.push('\n');
    }
    std::fs::write(&file, text).unwrap();

    let s = archive(&l, &file, now_ms(), 1_000).await.unwrap();
    assert_eq!((s.archived, s.first, s.last), (2, Some(3), Some(4)));
    assert_eq!(archived(&file), [1, 2, 3, 4]);
    assert!(in_redis(&l).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archiving_while_money_moves_keeps_every_entry_exactly_once() {
    let server = RedisServer::start();
    let l = Arc::new(RedisLedger::connect(&server.url(), "a4").unwrap());
    let archive_file = TempArchive::new("busy");
    let file = archive_file.path.clone();
    // The writer waits for an archiver run every 50 entries, so runs and writes interleave
    // however fast either side is.
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let l = Arc::clone(&l);
        let runs = Arc::clone(&runs);
        tokio::spawn(async move {
            for i in 0..400 {
                while runs.load(std::sync::atomic::Ordering::Acquire) < i / 50 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                l.transfer(&deposit(&format!("u{}", i % 7), 3, &format!("k{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    while !writer.is_finished() {
        archive(&l, &file, now_ms(), 37).await.unwrap();
        runs.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
    writer.await.unwrap();
    archive(&l, &file, now_ms(), 37).await.unwrap();
    assert!(
        runs.load(std::sync::atomic::Ordering::Acquire) >= 7,
        "the archiver ran while money moved"
    );
    assert_eq!(archived(&file), (1..=400).collect::<Vec<u64>>());
    assert!(in_redis(&l).await.is_empty());
    assert_eq!(total(l.as_ref()).await, 0);
}

#[tokio::test]
async fn trimming_past_the_last_entry_is_refused() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "a5").unwrap();
    deposits(&l, 0, 2).await;
    assert_eq!(
        l.trim_entries(3).await,
        Err(LedgerError::BeyondLog {
            through: 3,
            last: 2
        })
    );
    assert_eq!(l.archived_through().await.unwrap(), 0);
    assert_eq!(in_redis(&l).await, [1, 2]);
    // Trimming never moves the mark back.
    assert_eq!(l.trim_entries(2).await.unwrap().archived_through, 2);
    assert_eq!(l.trim_entries(1).await.unwrap().archived_through, 2);
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gameserver"))
        .arg("ledger-archive")
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_command_archives_and_reports_bad_arguments() {
    let server = RedisServer::start();
    let l = RedisLedger::connect(&server.url(), "a6").unwrap();
    let archive_file = TempArchive::new("cli");
    let file = archive_file.path.clone();
    deposits(&l, 0, 3).await;
    let url = server.url();
    let out_path = file.to_str().unwrap();
    let common = [
        "--redis-url",
        &url,
        "--redis-prefix",
        "a6",
        "--out",
        out_path,
    ];

    // Everything is younger than a day: nothing moves.
    let o = cli(&common);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing older than 86400 s"));
    assert_eq!(in_redis(&l).await, [1, 2, 3]);

    let o = cli(&[&common[..], &["--keep-seconds", "0"]].concat());
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("archived 3 entries (seq 1..=3)"),
        "{o:?}"
    );
    assert_eq!(archived(&file), [1, 2, 3]);

    let o = cli(&[&common[..], &["--batch", "0"]].concat());
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch must be between 1 and 10000"));

    let o = cli(&["--out", out_path]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--redis-url"));

    // A file that is not an archive is left alone, and said so.
    std::fs::write(&file, "not an archive\n").unwrap();
    let o = cli(&[&common[..], &["--keep-seconds", "0"]].concat());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(out_path) && err.contains("not a ledger entry"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not an archive\n");
}
