//! A worker process: opens its share of the connections, tells the coordinator when they are up,
//! measures from the coordinator's "start" until the duration passes, then prints its report.
//! Lines on stdout are JSON [`WorkerLine`]s; the coordinator writes "start" on stdin.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use super::args::BenchArgs;
use super::client::{self, Phase, Player, Tally};
use super::error::BenchError;
use super::report::{Samples, WorkerReport};
use crate::auth::mint_token;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum WorkerLine {
    Connected { connected: u64, failed: u64 },
    Report { report: Box<WorkerReport> },
}

/// Resolve a loopback `ws://host:port/path` URL to its socket address.
pub fn server_addr(url: &str) -> Result<SocketAddr, BenchError> {
    let bad = || BenchError::NotLoopback(url.to_owned());
    let rest = url.strip_prefix("ws://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .map_err(|_| bad())?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(bad)?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(bad())
    }
}

pub async fn run(args: &BenchArgs, index: usize) -> Result<(), BenchError> {
    let workers = args.worker_count();
    let server = server_addr(&args.url)?;
    let sources = args.source_addrs();
    let share = args.share(index, workers);
    let tally = Arc::new(Tally::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Holding);
    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();

    let per_worker_rate = (f64::from(args.connect_rate.max(1)) / workers as f64).max(1.0);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / per_worker_rate));
    let bet_period = (args.bet_rate > 0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / f64::from(args.bet_rate)));
    let now_secs = crate::clock::now_ms() / 1000;
    let secret = args.jwt_secret.as_bytes();
    let secret_arc: Arc<[u8]> = Arc::from(secret);
    let resume = args.resume;
    for i in share.clone() {
        pace.tick().await;
        let user_id = format!("{}-{i}", args.user_prefix);
        let token = match mint_token(secret, &user_id, now_secs, 300) {
            Ok(t) => t,
            Err(e) => return Err(BenchError::Worker(format!("cannot mint tokens: {e}"))),
        };
        let player = Player {
            server,
            url: args.url.clone(),
            source: sources[i % sources.len()],
            user_id,
            token,
            rooms: args.rooms_of(i),
            secret: Arc::clone(&secret_arc),
        };
        // Spread bet timers evenly over one period so bets arrive at a steady rate from the
        // first second (player i of n bets first at i/n of the period).
        let bet = bet_period.map(|period| {
            let offset = period.mul_f64(i as f64 / args.connections.max(1) as f64);
            (period, offset, args.bet_amount)
        });
        let (tally, phase, up) = (tally.clone(), phase_rx.clone(), up_tx.clone());
        tokio::spawn(join_and_play(player, tally, phase, up, bet, resume));
    }
    drop(up_tx);

    let (connected, failed) = count_joins(share.len(), &mut up_rx, &tally).await;
    say(&WorkerLine::Connected { connected, failed })?;

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        if line.trim() == "start" {
            break;
        }
    }
    let started = Instant::now();
    let _ = phase_tx.send(Phase::Measuring);
    tokio::select! {
        _ = tokio::time::sleep(args.measure_for()) => {}
        _ = stop_requested(&mut stdin) => {}
    }
    let measured_secs = started.elapsed().as_secs_f64();
    // No new bets; wait (bounded) until every bet sent has been settled or rejected.
    let _ = phase_tx.send(Phase::Settling);
    wait_until_settled(&tally, Duration::from_secs(args.settle_wait)).await;
    let _ = phase_tx.send(Phase::Done);
    wait_until_stopped(&tally, connected).await;

    let mut report = tally.take_report();
    report.connected = connected;
    report.measured_secs = measured_secs;
    say(&WorkerLine::Report {
        report: Box::new(report),
    })
}

/// One player's task: join, report whether it got in, then play until the end.
async fn join_and_play(
    player: Player,
    tally: Arc<Tally>,
    phase: watch::Receiver<Phase>,
    up: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
    bet: Option<(Duration, Duration, i64)>,
    resume: bool,
) {
    match client::join(&player).await {
        Ok((ws, session)) => {
            for us in &session.join_us {
                Tally::latency(&tally.join, *us);
            }
            let _ = up.send(Ok(()));
            client::play(ws, player, session, tally, phase, bet, resume).await;
        }
        Err(e) => {
            let _ = up.send(Err(e.label()));
        }
    }
}

/// Counts the `players` joins as they are reported: (connected, failed).
async fn count_joins(
    players: usize,
    up_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<(), String>>,
    tally: &Tally,
) -> (u64, u64) {
    let mut connected = 0u64;
    let mut failed = 0u64;
    for _ in 0..players {
        match up_rx.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(label)) => {
                failed += 1;
                tally.count_failure(label);
            }
            None => break,
        }
    }
    (connected, failed)
}

/// Waits until every bet sent has been settled or rejected, at most `wait`.
async fn wait_until_settled(tally: &Tally, wait: Duration) {
    let settle_deadline = Instant::now() + wait;
    while tally.outstanding.load(std::sync::atomic::Ordering::Acquire) > 0
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Players count their end state (rooms, outstanding bets) as they stop; one still
/// reconnecting stops once it is back (or gives up), so wait for all of them (bounded).
async fn wait_until_stopped(tally: &Tally, connected: u64) {
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    while tally.finished.load(std::sync::atomic::Ordering::Acquire) < connected
        && Instant::now() < stop_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves when the coordinator writes "stop" or this process gets SIGINT/SIGTERM: the
/// measurement ends early and the run settles and reports as usual.
async fn stop_requested(stdin: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>) {
    let from_coordinator = async {
        loop {
            match stdin.next_line().await {
                Ok(Some(line)) if line.trim() == "stop" => return,
                Ok(Some(_)) => {}
                // No coordinator any more: measure for the full duration.
                Ok(None) | Err(_) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = from_coordinator => {}
        _ = crate::distributed::stop_signal() => {}
    }
}

impl Tally {
    fn count_failure(&self, label: String) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        *r.connect_failures.entry(label).or_default() += 1;
    }

    fn take_report(&self) -> WorkerReport {
        let samples = |slot: &std::sync::Mutex<Option<hdrhistogram::Histogram<u64>>>| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(Samples::from_histogram)
                .unwrap_or_default()
        };
        let mut r = std::mem::take(&mut *self.report.lock().unwrap_or_else(|e| e.into_inner()));
        r.delivery = samples(&self.delivery);
        r.ack = samples(&self.ack);
        r.settle = samples(&self.settle);
        r.resume = samples(&self.resume);
        r.join = samples(&self.join);
        r
    }
}

fn say(line: &WorkerLine) -> Result<(), BenchError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_websocket_urls_are_accepted() {
        assert_eq!(
            server_addr("ws://127.0.0.1:8080/ws").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(server_addr("ws://127.0.0.9:1").is_ok());
        assert!(matches!(
            server_addr("ws://10.0.0.1:8080/ws"),
            Err(BenchError::NotLoopback(_))
        ));
        assert!(server_addr("http://127.0.0.1:8080/").is_err());
    }
}
