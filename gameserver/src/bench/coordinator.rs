//! The coordinator: starts the worker processes, starts measuring once every worker has its
//! connections up (sampling the server's memory at that moment), stops them early on SIGINT or
//! SIGTERM, and merges the reports.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::args::BenchArgs;
use super::error::BenchError;
use super::report::{rss_kib, Report, WorkerReport};
use super::worker::{self, WorkerLine};

/// Run the benchmark (or, with `--worker-index`, one worker of it).
pub async fn run(args: &BenchArgs) -> Result<Option<Report>, BenchError> {
    if args.connections == 0 || args.rooms == 0 || args.duration == 0 {
        return Err(BenchError::Empty);
    }
    if args.rooms_per_player == 0 || args.rooms_per_player > args.rooms {
        return Err(BenchError::RoomsPerPlayer);
    }
    worker::server_addr(&args.url)?;
    if let Some(index) = args.worker_index {
        worker::run(args, index).await?;
        return Ok(None);
    }

    let workers = args.worker_count();
    let rss_before = args.server_pid.and_then(rss_kib);
    let mut children = Vec::with_capacity(workers);
    for k in 0..workers {
        children.push(spawn_worker(k)?);
    }

    let mut lines = Vec::with_capacity(workers);
    let mut stdins: Vec<ChildStdin> = Vec::with_capacity(workers);
    for child in &mut children {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| worker_gone("no stdout"))?;
        stdins.push(child.stdin.take().ok_or_else(|| worker_gone("no stdin"))?);
        lines.push(BufReader::new(out).lines());
    }
    for l in &mut lines {
        match next_line(l).await? {
            WorkerLine::Connected { .. } => {}
            other => return Err(worker_gone(&format!("unexpected {other:?}"))),
        }
    }
    let rss_connected = args.server_pid.and_then(rss_kib);
    let rss_warm = if args.warmup > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(args.warmup)).await;
        args.server_pid.and_then(rss_kib)
    } else {
        None
    };
    for stdin in &mut stdins {
        stdin.write_all(b"start\n").await?;
        stdin.flush().await?;
    }
    // SIGINT/SIGTERM ends the measurement early: the workers settle and report as usual.
    let stopper = tokio::spawn(async move {
        crate::distributed::stop_signal().await;
        for stdin in &mut stdins {
            let _ = stdin.write_all(b"stop\n").await;
            let _ = stdin.flush().await;
        }
        stdins
    });
    let mut reports: Vec<WorkerReport> = Vec::with_capacity(workers);
    for l in &mut lines {
        match next_line(l).await? {
            WorkerLine::Report { report } => reports.push(*report),
            other => return Err(worker_gone(&format!("unexpected {other:?}"))),
        }
    }
    stopper.abort();
    for mut child in children {
        let _ = child.wait().await;
    }
    let mut report = Report::merge(args.connections, &reports);
    report.set_server_memory(rss_before, rss_connected);
    report.server_rss_kib_after_warmup = rss_warm;
    Ok(Some(report))
}

/// Re-run this binary with the same arguments as worker `k`.
fn spawn_worker(k: usize) -> Result<Child, BenchError> {
    let exe = std::env::current_exe()?;
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    argv.push("--worker-index".into());
    argv.push(k.to_string());
    Ok(Command::new(exe)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Result<WorkerLine, BenchError> {
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| worker_gone("exited early"))?;
    Ok(serde_json::from_str(&line)?)
}

fn worker_gone(what: &str) -> BenchError {
    BenchError::Worker(what.to_owned())
}
