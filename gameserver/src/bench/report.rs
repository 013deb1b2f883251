//! What workers measure and how the coordinator merges it. Latencies are recorded in
//! microseconds in HdrHistograms and travel between processes as (value, count) pairs.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded (µs); anything slower is clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 1 µs resolution below 1 ms, 1 ms resolution near 1 s.
    // The bounds are constants that satisfy hdrhistogram's rules, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_LATENCY_US));
}

/// A histogram as sparse (value, count) pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples(pub Vec<(u64, u64)>);

impl Samples {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            // Values came from a histogram with the same bounds.
            let _ = h.record_n(value.clamp(1, MAX_LATENCY_US), count);
        }
    }
}

/// One worker's results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub connected: u64,
    pub connect_failures: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub events: u64,
    pub delivery: Samples,
    pub bets_sent: u64,
    pub bets_acknowledged: u64,
    pub bets_settled: u64,
    pub bets_rejected: BTreeMap<String, u64>,
    pub ack: Samples,
    pub settle: Samples,
    pub measured_secs: f64,
    #[serde(default)]
    pub resilience: Resilience,
    #[serde(default)]
    pub resume: Samples,
    /// `join_game` → `game_joined` (µs), each room of each player's first join.
    #[serde(default)]
    pub join: Samples,
}

/// Drain/reconnect/resume counters (with `--resume`) and the exactly-once bet accounting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resilience {
    /// `server_draining` notices received.
    pub drain_notices: u64,
    /// Sessions resumed (`resumed` received).
    pub resumes: u64,
    /// Failed reconnect/resume attempts, by cause (retried until the deadline).
    pub resume_failures: BTreeMap<String, u64>,
    pub rooms_recovered: u64,
    /// Rooms whose missed frames could not all be replayed (including those not rejoined).
    pub rooms_not_recovered: u64,
    /// Rooms a resume did not get the player back into (`error`, or absent): must be 0.
    #[serde(default)]
    pub rooms_not_rejoined: u64,
    /// Players that ended the run connected and in every room they had joined.
    #[serde(default)]
    pub players_in_rooms_at_end: u64,
    pub inboxes_not_recovered: u64,
    /// Frames received again after a resume (at or before the known position): must be 0.
    pub duplicate_frames: u64,
    /// Offsets skipped after a resume: must be 0.
    pub gaps: u64,
    /// `bet_settled` frames received again for a key already settled (the ledger moves a bet's
    /// money once regardless; clients drop repeats by key).
    pub settlement_repeats: u64,
    /// Acknowledged bets never settled by the end (after the settle wait): must be 0.
    pub bets_unsettled: u64,
    /// Bets never acknowledged by the end.
    pub bets_unacknowledged: u64,
}

impl Resilience {
    fn add(&mut self, o: &Resilience) {
        self.drain_notices += o.drain_notices;
        self.resumes += o.resumes;
        add_counts(&mut self.resume_failures, &o.resume_failures);
        self.rooms_recovered += o.rooms_recovered;
        self.rooms_not_recovered += o.rooms_not_recovered;
        self.rooms_not_rejoined += o.rooms_not_rejoined;
        self.players_in_rooms_at_end += o.players_in_rooms_at_end;
        self.inboxes_not_recovered += o.inboxes_not_recovered;
        self.duplicate_frames += o.duplicate_frames;
        self.gaps += o.gaps;
        self.settlement_repeats += o.settlement_repeats;
        self.bets_unsettled += o.bets_unsettled;
        self.bets_unacknowledged += o.bets_unacknowledged;
    }
}

/// Percentiles of one latency, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(0.50),
            p95_ms: ms(0.95),
            p99_ms: ms(0.99),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// The merged result of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub connections_requested: usize,
    pub workers: usize,
    pub connected: u64,
    pub connect_failures: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub measured_secs: f64,
    pub events_received: u64,
    pub events_per_sec: f64,
    pub delivery: Percentiles,
    pub bets_sent: u64,
    pub bets_acknowledged: u64,
    pub bets_settled: u64,
    pub bets_rejected: BTreeMap<String, u64>,
    pub acks_per_sec: f64,
    pub settles_per_sec: f64,
    pub ack: Percentiles,
    pub settle: Percentiles,
    pub resilience: Resilience,
    /// Close → `resumed`, per reconnect.
    pub resume: Percentiles,
    /// `join_game` → `game_joined`, per room joined while connecting.
    pub join: Percentiles,
    /// Server resident memory before connecting and with every connection up (KiB).
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_connected: Option<u64>,
    pub server_kib_per_connection: Option<f64>,
    /// Server resident memory after the warm-up, with rounds running (KiB).
    pub server_rss_kib_after_warmup: Option<u64>,
}

impl Report {
    pub fn merge(connections_requested: usize, workers: &[WorkerReport]) -> Self {
        let mut delivery = new_histogram();
        let mut ack = new_histogram();
        let mut settle = new_histogram();
        let mut resume = new_histogram();
        let mut join = new_histogram();
        let mut r = Report {
            connections_requested,
            workers: workers.len(),
            ..Report::default()
        };
        for w in workers {
            r.connected += w.connected;
            r.disconnects += w.disconnects;
            r.events_received += w.events;
            r.bets_sent += w.bets_sent;
            r.bets_acknowledged += w.bets_acknowledged;
            r.bets_settled += w.bets_settled;
            r.measured_secs = r.measured_secs.max(w.measured_secs);
            add_counts(&mut r.connect_failures, &w.connect_failures);
            add_counts(&mut r.bets_rejected, &w.bets_rejected);
            w.delivery.add_to(&mut delivery);
            w.ack.add_to(&mut ack);
            w.settle.add_to(&mut settle);
            w.resume.add_to(&mut resume);
            w.join.add_to(&mut join);
            r.resilience.add(&w.resilience);
        }
        let per_sec = |n: u64| {
            if r.measured_secs > 0.0 {
                n as f64 / r.measured_secs
            } else {
                0.0
            }
        };
        r.events_per_sec = per_sec(r.events_received);
        r.acks_per_sec = per_sec(r.bets_acknowledged);
        r.settles_per_sec = per_sec(r.bets_settled);
        r.delivery = Percentiles::of(&delivery);
        r.ack = Percentiles::of(&ack);
        r.settle = Percentiles::of(&settle);
        r.resume = Percentiles::of(&resume);
        r.join = Percentiles::of(&join);
        r
    }

    pub fn set_server_memory(&mut self, before_kib: Option<u64>, connected_kib: Option<u64>) {
        self.server_rss_kib_before = before_kib;
        self.server_rss_kib_connected = connected_kib;
        if let (Some(b), Some(c)) = (before_kib, connected_kib) {
            if self.connected > 0 {
                self.server_kib_per_connection =
                    Some(c.saturating_sub(b) as f64 / self.connected as f64);
            }
        }
    }

    pub fn to_text(&self) -> String {
        let p = |l: &Percentiles| {
            format!(
                "n={} p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
                l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            )
        };
        let mut s = String::new();
        s.push_str(&format!(
            "connections: {}/{} up ({} workers), failures {:?}, disconnects {}\n",
            self.connected,
            self.connections_requested,
            self.workers,
            self.connect_failures,
            self.disconnects
        ));
        s.push_str(&format!(
            "events:      {} in {:.1}s ({:.0}/s), delivery {}\n",
            self.events_received,
            self.measured_secs,
            self.events_per_sec,
            p(&self.delivery)
        ));
        s.push_str(&format!(
            "bets:        sent {}, acknowledged {} ({:.0}/s), settled {} ({:.0}/s), rejected {:?}\n",
            self.bets_sent,
            self.bets_acknowledged,
            self.acks_per_sec,
            self.bets_settled,
            self.settles_per_sec,
            self.bets_rejected
        ));
        s.push_str(&format!("game_joined: {}\n", p(&self.join)));
        s.push_str(&format!("bet ack:     {}\n", p(&self.ack)));
        s.push_str(&format!("bet settle:  {}\n", p(&self.settle)));
        let x = &self.resilience;
        if x.drain_notices + x.resumes + x.bets_unsettled + x.settlement_repeats > 0 {
            s.push_str(&format!(
                "resume:      drain notices {}, resumed {} (rooms recovered {}, not {}, not rejoined {}; inboxes not recovered {}), failed attempts {:?}\n",
                x.drain_notices, x.resumes, x.rooms_recovered, x.rooms_not_recovered,
                x.rooms_not_rejoined, x.inboxes_not_recovered, x.resume_failures
            ));
            s.push_str(&format!(
                "at the end:  {} of {} players connected and in all their rooms\n",
                x.players_in_rooms_at_end, self.connected
            ));
            s.push_str(&format!("close→resumed: {}\n", p(&self.resume)));
            s.push_str(&format!(
                "exactly once: duplicate frames {}, gaps {}, settlement repeats {}, acknowledged but unsettled {}, unacknowledged {}\n",
                x.duplicate_frames, x.gaps, x.settlement_repeats, x.bets_unsettled, x.bets_unacknowledged
            ));
        }
        if let Some(per) = self.server_kib_per_connection {
            s.push_str(&format!(
                "server RSS:  {} KiB before, {} KiB connected, {:.2} KiB per connection\n",
                self.server_rss_kib_before.unwrap_or(0),
                self.server_rss_kib_connected.unwrap_or(0),
                per
            ));
            if let (Some(warm), Some(before)) =
                (self.server_rss_kib_after_warmup, self.server_rss_kib_before)
            {
                s.push_str(&format!(
                    "server RSS after warm-up: {warm} KiB, {:.2} KiB per connection\n",
                    warm.saturating_sub(before) as f64 / self.connected.max(1) as f64
                ));
            }
        }
        s
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Resident set size of a process in KiB, from /proc (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(latencies_us: &[u64], connected: u64) -> WorkerReport {
        let mut h = new_histogram();
        for &l in latencies_us {
            record(&mut h, l);
        }
        WorkerReport {
            connected,
            events: latencies_us.len() as u64,
            delivery: Samples::from_histogram(&h),
            join: Samples::from_histogram(&h),
            measured_secs: 2.0,
            bets_rejected: BTreeMap::from([("ROUND_CLOSED".to_string(), 1)]),
            ..WorkerReport::default()
        }
    }

    #[test]
    fn merging_workers_combines_counts_and_latency_distributions() {
        let a = worker(&[1_000; 98], 10);
        let b = worker(&[50_000, 90_000], 5);
        let r = Report::merge(20, &[a, b]);
        assert_eq!(r.connected, 15);
        assert_eq!(r.events_received, 100);
        assert_eq!(r.events_per_sec, 50.0);
        assert_eq!(r.delivery.count, 100);
        assert_eq!(r.join, r.delivery, "join latencies merge the same way");
        assert!((r.delivery.p50_ms - 1.0).abs() < 0.01, "{:?}", r.delivery);
        assert!(r.delivery.p99_ms >= 49.9, "{:?}", r.delivery);
        assert!((r.delivery.max_ms - 90.0).abs() < 0.1, "{:?}", r.delivery);
        assert_eq!(r.bets_rejected["ROUND_CLOSED"], 2);
    }

    #[test]
    fn memory_per_connection_is_the_growth_divided_by_connections() {
        let mut r = Report::merge(4, &[worker(&[], 4)]);
        r.set_server_memory(Some(1000), Some(1040));
        assert_eq!(r.server_kib_per_connection, Some(10.0));
    }

    #[test]
    fn reads_this_process_rss() {
        assert!(rss_kib(std::process::id()).unwrap_or(0) > 0);
    }
}
