//! Reading one pod's `/metrics`: an HTTP GET with a timeout, parsed with `prometheus-parse`.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use prometheus_parse::{Scrape, Value};

use super::calc::Buckets;

/// Gateway: open WebSocket connections.
pub const CONNECTIONS: &str = "ws_active_connections";
/// Gateway: engine emission → frame written, in milliseconds.
pub const LATENCY: &str = "ws_message_latency_ms";
/// Engine: bets not yet taken into the ledger, fleet-wide.
pub const BACKLOG: &str = "bet_stream_backlog";
/// Engine: bets settled (summed over outcomes).
pub const SETTLED: &str = "engine_bets_settled_total";

/// Largest `/metrics` answer read (a gameserver's is a few KiB).
const MAX_BODY: usize = 4 << 20;

/// Why a pod could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("GET {url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: cannot read the body: {reason}")]
    Body { url: String, reason: String },
    #[error("cannot parse the Prometheus text format: {0}")]
    Parse(String),
}

/// The values the autoscaler reads from one pod (each `None` when the pod does not export it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMetrics {
    pub connections: Option<f64>,
    pub latency: Option<Buckets>,
    pub backlog: Option<f64>,
    pub settled: Option<f64>,
    /// Settled bets per second, when the source computes it (Prometheus's `rate()`); a direct
    /// scrape leaves it `None` and the rate comes from two scrapes' counters.
    pub settled_rate: Option<f64>,
}

/// Parses the Prometheus text exposition format.
pub fn parse(text: &str) -> Result<PodMetrics, ScrapeError> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).map_err(|e| ScrapeError::Parse(e.to_string()))?;
    let mut m = PodMetrics::default();
    for s in scrape.samples {
        match (s.metric.as_str(), s.value) {
            (CONNECTIONS, Value::Gauge(v) | Value::Untyped(v)) => m.connections = Some(v),
            (BACKLOG, Value::Gauge(v) | Value::Untyped(v)) => m.backlog = Some(v),
            (SETTLED, Value::Counter(v) | Value::Untyped(v)) => {
                *m.settled.get_or_insert(0.0) += v;
            }
            (LATENCY, Value::Histogram(h)) => {
                let mut b: Buckets = h.iter().map(|c| (c.less_than, c.count)).collect();
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                m.latency = Some(b);
            }
            _ => {}
        }
    }
    Ok(m)
}

/// A small HTTP/1 client for pod scrapes (plain HTTP: pods are reached on their IP).
#[derive(Clone)]
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// GET `http://addr/metrics` and parse it, within the timeout.
    pub async fn scrape(&self, addr: SocketAddr) -> Result<PodMetrics, ScrapeError> {
        let url = format!("http://{addr}/metrics");
        let text = tokio::time::timeout(self.timeout, self.fetch(&url))
            .await
            .map_err(|_| ScrapeError::Timeout {
                url: url.clone(),
                timeout: self.timeout,
            })??;
        parse(&text)
    }

    async fn fetch(&self, url: &str) -> Result<String, ScrapeError> {
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ScrapeError::Body {
                    url: url.into(),
                    reason: e.to_string(),
                })?;
        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|source| ScrapeError::Request {
                url: url.into(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status {
                url: url.into(),
                status: resp.status().as_u16(),
            });
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ScrapeError::Body {
                url: url.into(),
                reason: e.to_string(),
            })?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|e| ScrapeError::Body {
            url: url.into(),
            reason: e.to_string(),
        })
    }
}

/// A server that accepts connections but never answers (for timeout tests); it runs until the
/// test's runtime shuts down.
#[cfg(test)]
pub(crate) async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = vec![];
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    (addr, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "\
# HELP ws_active_connections Open WebSocket connections on this gateway
# TYPE ws_active_connections gauge
ws_active_connections 1432
# HELP ws_message_latency_ms Delay
# TYPE ws_message_latency_ms histogram
ws_message_latency_ms_bucket{le=\"5\"} 90
ws_message_latency_ms_bucket{le=\"10\"} 95
ws_message_latency_ms_bucket{le=\"25\"} 97
ws_message_latency_ms_bucket{le=\"50\"} 98
ws_message_latency_ms_bucket{le=\"100\"} 99
ws_message_latency_ms_bucket{le=\"250\"} 100
ws_message_latency_ms_bucket{le=\"500\"} 100
ws_message_latency_ms_bucket{le=\"+Inf\"} 100
ws_message_latency_ms_sum 812
ws_message_latency_ms_count 100
# TYPE ws_messages_total counter
ws_messages_total{type=\"bet_settled\"} 7
";

    const ENGINE: &str = "\
# TYPE bet_stream_backlog gauge
bet_stream_backlog 120
# TYPE engine_bets_settled_total counter
engine_bets_settled_total{outcome=\"win\"} 400
engine_bets_settled_total{outcome=\"loss\"} 600
";

    #[test]
    fn parses_gateway_metrics() {
        let m = parse(GATEWAY).unwrap();
        assert_eq!(m.connections, Some(1432.0));
        let b = m.latency.unwrap();
        assert_eq!(b.len(), 8);
        assert_eq!(b[0], (5.0, 90.0));
        assert!(b[7].0.is_infinite());
        assert_eq!(b[7].1, 100.0);
        assert_eq!(m.backlog, None);
        assert_eq!(m.settled, None);
    }

    #[test]
    fn parses_engine_metrics_and_sums_outcomes() {
        let m = parse(ENGINE).unwrap();
        assert_eq!(m.backlog, Some(120.0));
        assert_eq!(m.settled, Some(1000.0));
        assert_eq!(m.connections, None);
    }

    #[tokio::test]
    async fn scrapes_a_real_http_endpoint_and_times_out_on_a_silent_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    ENGINE.len(),
                    ENGINE
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let scraper = Scraper::new(Duration::from_millis(500));
        let m = scraper.scrape(addr).await.unwrap();
        assert_eq!(m.backlog, Some(120.0));

        let (silent_addr, _hold) = silent_server().await;
        let err = scraper.scrape(silent_addr).await.unwrap_err();
        assert!(matches!(err, ScrapeError::Timeout { .. }), "{err}");
    }
}
