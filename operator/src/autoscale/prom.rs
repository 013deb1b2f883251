//! The autoscaler's inputs from a Prometheus server (`spec.autoscaling.prometheusUrl`) instead
//! of the pods: one instant query per sync for the fleet's series, grouped by their `pod` label
//! into the same per-pod values a direct scrape gives, so the decisions are the same.
//!
//! Prometheus must scrape the gateways' and engines' admin ports and label each series with
//! `namespace` and `pod` (what `kubernetes_sd_configs` relabelling, a PodMonitor or a
//! ServiceMonitor give).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::scrape::{PodMetrics, BACKLOG, CONNECTIONS, LATENCY, SETTLED};

/// Largest query answer read.
const MAX_BODY: usize = 16 << 20;

/// Why Prometheus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("POST {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("POST {url}: timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("POST {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Prometheus answered {error_type}: {error}")]
    Query { error_type: String, error: String },
    #[error("cannot read the Prometheus answer: {0}")]
    Decode(String),
}

/// Window of the settled-bets rate: at least two scrapes at Prometheus's usual intervals
/// (≤ 30 s).
pub const RATE_WINDOW: &str = "1m";

/// The label matchers of a fleet's pods in `namespace` (`<fleet>-gateway-…`, `<fleet>-engine-…`).
fn pods(namespace: &str, fleet: &str) -> String {
    format!(
        r#"namespace="{namespace}",pod=~"{}-(gateway|engine)-.+""#,
        fleet.replace('.', "\\\\.")
    )
}

/// The instant query for the values read as they are: connections, latency buckets, backlog.
pub fn query(namespace: &str, fleet: &str) -> String {
    format!(
        r#"{{__name__=~"{CONNECTIONS}|{LATENCY}_bucket|{BACKLOG}",{}}}"#,
        pods(namespace, fleet)
    )
}

/// The instant query for each engine's settled bets per second. Prometheus computes the rate
/// from its own sample times; rates taken between two reads of a counter that Prometheus only
/// refreshes every scrape interval would alternate between zero and a multiple of the truth.
pub fn rate_query(namespace: &str, fleet: &str) -> String {
    format!(
        r#"sum by (pod) (rate({SETTLED}{{{}}}[{RATE_WINDOW}]))"#,
        pods(namespace, fleet)
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: HashMap<String, String>,
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}

/// Decodes an instant-query answer into per-pod values. A series scraped twice (two jobs)
/// counts once: duplicates of the same pod, metric and bucket/outcome keep the larger value.
pub fn decode(body: &str) -> Result<HashMap<String, PodMetrics>, PromError> {
    let answer: Answer =
        serde_json::from_str(body).map_err(|e| PromError::Decode(e.to_string()))?;
    if answer.status != "success" {
        return Err(PromError::Query {
            error_type: answer.error_type.unwrap_or_else(|| answer.status.clone()),
            error: answer.error.unwrap_or_default(),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| PromError::Decode("no data in a successful answer".into()))?;
    if data.result_type != "vector" {
        return Err(PromError::Decode(format!(
            "expected a vector, got {}",
            data.result_type
        )));
    }
    // (pod, metric, le or outcome) → value.
    let mut values: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for s in data.result {
        // A function's result (the rate) has no metric name.
        let Some(pod) = s.metric.get("pod") else {
            continue;
        };
        let name = s.metric.get("__name__").cloned().unwrap_or_default();
        let Ok(v) = s.value.1.parse::<f64>() else {
            continue;
        };
        if v.is_nan() {
            continue;
        }
        let sub = s
            .metric
            .get("le")
            .or_else(|| s.metric.get("outcome"))
            .cloned()
            .unwrap_or_default();
        let slot = values.entry((pod.clone(), name, sub)).or_insert(v);
        *slot = slot.max(v);
    }
    let bucket = format!("{LATENCY}_bucket");
    let mut pods: HashMap<String, PodMetrics> = HashMap::new();
    for ((pod, name, sub), v) in values {
        let m = pods.entry(pod).or_default();
        match name.as_str() {
            CONNECTIONS => m.connections = Some(v),
            BACKLOG => m.backlog = Some(v),
            SETTLED => *m.settled.get_or_insert(0.0) += v,
            "" => m.settled_rate = Some(v),
            n if n == bucket => {
                let le = if sub == "+Inf" {
                    f64::INFINITY
                } else {
                    match sub.parse::<f64>() {
                        Ok(le) => le,
                        Err(_) => continue,
                    }
                };
                m.latency.get_or_insert_with(Vec::new).push((le, v));
            }
            _ => {}
        }
    }
    for m in pods.values_mut() {
        if let Some(b) = m.latency.as_mut() {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
    }
    Ok(pods)
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for Prometheus's HTTP API: plain HTTP, or HTTPS with the system's CA roots.
#[derive(Clone)]
pub struct PromClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// Why not, when the system has no CA roots (an image without a CA bundle): `http://`
    /// URLs still work.
    https: Result<Client<Https, Full<Bytes>>, String>,
    timeout: Duration,
}

impl PromClient {
    pub fn new(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        let mut tls_tcp = http.clone();
        tls_tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map(|b| {
                let connector = b.https_only().enable_http1().wrap_connector(tls_tcp);
                Client::builder(TokioExecutor::new()).build(connector)
            })
            .map_err(|e| format!("no CA roots for https: {e}"));
        Self {
            http: Client::builder(TokioExecutor::new()).build(http),
            https,
            timeout,
        }
    }

    /// A fleet's per-pod values: the values query and the rate query, at once.
    pub async fn fleet(
        &self,
        base: &str,
        namespace: &str,
        fleet: &str,
    ) -> Result<HashMap<String, PodMetrics>, PromError> {
        let (values_q, rates_q) = (query(namespace, fleet), rate_query(namespace, fleet));
        let (values, rates) =
            futures::try_join!(self.pods(base, &values_q), self.pods(base, &rates_q))?;
        let mut all = values;
        for (pod, r) in rates {
            all.entry(pod).or_default().settled_rate = r.settled_rate;
        }
        Ok(all)
    }

    /// Runs an instant query (`POST <base>/api/v1/query`) and decodes it per pod.
    pub async fn pods(
        &self,
        base: &str,
        promql: &str,
    ) -> Result<HashMap<String, PodMetrics>, PromError> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let body = tokio::time::timeout(self.timeout, self.post(&url, promql))
            .await
            .map_err(|_| PromError::Timeout {
                url: url.clone(),
                timeout: self.timeout,
            })??;
        decode(&body)
    }

    async fn post(&self, url: &str, promql: &str) -> Result<String, PromError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let req = hyper::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| PromError::Url {
                url: url.into(),
                reason: e.to_string(),
            })?;
        let sent = if url.starts_with("https://") {
            match &self.https {
                Ok(client) => client.request(req).await,
                Err(reason) => {
                    return Err(PromError::Request {
                        url: url.into(),
                        reason: reason.clone(),
                    })
                }
            }
        } else {
            self.http.request(req).await
        };
        let resp = sent.map_err(|e| PromError::Request {
            url: url.into(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| PromError::Request {
                url: url.into(),
                reason: format!("reading the answer: {e}"),
            })?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Query errors come with 400/422 and a JSON body that says why.
        if !status.is_success() && !text.trim_start().starts_with('{') {
            return Err(PromError::Status {
                url: url.into(),
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_select_the_fleets_pods_and_metrics() {
        assert_eq!(
            query("games", "dice"),
            r#"{__name__=~"ws_active_connections|ws_message_latency_ms_bucket|bet_stream_backlog",namespace="games",pod=~"dice-(gateway|engine)-.+"}"#
        );
        assert_eq!(
            rate_query("games", "dice"),
            r#"sum by (pod) (rate(engine_bets_settled_total{namespace="games",pod=~"dice-(gateway|engine)-.+"}[1m]))"#
        );
        // A dot in a fleet name is a literal dot in the regex.
        assert!(query("games", "dice.eu").contains(r#"pod=~"dice\\.eu-(gateway|engine)-.+""#));
    }

    const ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
      {"metric":{"__name__":"ws_active_connections","namespace":"games","pod":"dice-gateway-a","job":"gf"},"value":[1700000000.1,"1432"]},
      {"metric":{"__name__":"ws_active_connections","namespace":"games","pod":"dice-gateway-a","job":"other"},"value":[1700000000.1,"1430"]},
      {"metric":{"__name__":"ws_active_connections","namespace":"games","pod":"dice-gateway-b"},"value":[1700000000.1,"7"]},
      {"metric":{"__name__":"ws_message_latency_ms_bucket","pod":"dice-gateway-a","le":"+Inf"},"value":[1700000000.1,"100"]},
      {"metric":{"__name__":"ws_message_latency_ms_bucket","pod":"dice-gateway-a","le":"5"},"value":[1700000000.1,"90"]},
      {"metric":{"__name__":"ws_message_latency_ms_bucket","pod":"dice-gateway-a","le":"25"},"value":[1700000000.1,"97"]},
      {"metric":{"__name__":"bet_stream_backlog","pod":"dice-engine-x"},"value":[1700000000.1,"120"]},
      {"metric":{"__name__":"engine_bets_settled_total","pod":"dice-engine-x","outcome":"win"},"value":[1700000000.1,"400"]},
      {"metric":{"__name__":"engine_bets_settled_total","pod":"dice-engine-x","outcome":"lose"},"value":[1700000000.1,"600"]},
      {"metric":{"__name__":"bet_stream_backlog","pod":"dice-engine-y"},"value":[1700000000.1,"NaN"]},
      {"metric":{"pod":"dice-engine-x"},"value":[1700000000.1,"12.5"]},
      {"metric":{"__name__":"ws_active_connections"},"value":[1700000000.1,"5"]}
    ]}}"#;

    #[test]
    fn decodes_an_answer_per_pod() {
        let pods = decode(ANSWER).unwrap();
        let a = &pods["dice-gateway-a"];
        // Scraped by two jobs: counted once.
        assert_eq!(a.connections, Some(1432.0));
        assert_eq!(
            a.latency.as_deref(),
            Some(&[(5.0, 90.0), (25.0, 97.0), (f64::INFINITY, 100.0)][..])
        );
        assert_eq!(pods["dice-gateway-b"].connections, Some(7.0));
        let x = &pods["dice-engine-x"];
        assert_eq!(x.backlog, Some(120.0));
        assert_eq!(x.settled, Some(1000.0));
        // A function's result carries no metric name: the rate.
        assert_eq!(x.settled_rate, Some(12.5));
        // NaN is no value; a series without a pod label belongs to no pod.
        assert!(!pods.contains_key("dice-engine-y"));
        assert_eq!(pods.len(), 3);
    }

    #[test]
    fn query_errors_and_odd_answers_are_errors() {
        let err = decode(
            r#"{"status":"error","errorType":"bad_data","error":"1:2: parse error: unexpected"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Prometheus answered bad_data: 1:2: parse error: unexpected"
        );
        let err = decode(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("expected a vector"), "{err}");
        assert!(matches!(decode("<html>"), Err(PromError::Decode(_))));
    }

    #[tokio::test]
    async fn posts_the_query_and_times_out_on_a_silent_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (req_tx, mut req_rx) = tokio::sync::mpsc::channel::<String>(1);
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            // Headers and the whole form body.
            loop {
                let n = s.read(&mut buf[got..]).await.unwrap();
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        req_tx.send(text).await.unwrap();
                        break;
                    }
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                ANSWER.len(),
                ANSWER
            );
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let client = PromClient::new(Duration::from_millis(500));
        let pods = client
            .pods(&format!("http://{addr}/"), "up{pod=~\"a|b\"}")
            .await
            .unwrap();
        assert_eq!(pods.len(), 3);
        let req = req_rx.recv().await.unwrap();
        assert!(req.starts_with("POST /api/v1/query HTTP/1.1"), "{req}");
        assert!(req.ends_with("query=up%7Bpod%3D%7E%22a%7Cb%22%7D"), "{req}");

        let (silent_addr, _hold) = crate::autoscale::scrape::silent_server().await;
        let err = client
            .pods(&format!("http://{silent_addr}"), "up")
            .await
            .unwrap_err();
        assert!(matches!(err, PromError::Timeout { .. }), "{err}");
    }
}
