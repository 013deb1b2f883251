//! Reads the draining gateways' open connections from their admin `/metrics` (best effort: a pod
//! that does not answer quickly is reported without a count, never as an error).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::drain::{parse_gauge, DrainingPod, CONNECTIONS_METRIC};

/// A draining pod answers quickly or not at all; the reconcile must not wait on it.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);

/// `ws_active_connections` of each pod (`None` where it could not be read), in order.
pub async fn connections(pods: &[DrainingPod], admin_port: i32) -> Vec<Option<i64>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let scrapes = pods.iter().map(|p| {
        let client = client.clone();
        async move {
            let ip = p.ip.as_deref()?;
            let uri: hyper::Uri = format!("http://{ip}:{admin_port}/metrics").parse().ok()?;
            let text = tokio::time::timeout(SCRAPE_TIMEOUT, async {
                let resp = client.get(uri).await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = resp.into_body().collect().await.ok()?.to_bytes();
                String::from_utf8(body.to_vec()).ok()
            })
            .await
            .ok()??;
            // A gauge of connections is a whole number.
            parse_gauge(&text, CONNECTIONS_METRIC).map(|v| v.max(0.0).round() as i64)
        }
    });
    futures::future::join_all(scrapes).await
}
