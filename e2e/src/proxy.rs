//! Services as loopback TCP proxies: each Service port listens on
//! `clusterIP:port` and forwards each new connection to a ready endpoint
//! (round robin), so a pod that stops being ready gets no new connections.

use crate::ctx::Ctx;
use crate::meta::meta_str;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Ready backends of one Service port, from its Endpoints object.
fn backends(ctx: &Ctx, ns: &str, svc: &str, port_name: &str) -> Vec<(String, i64)> {
    let Some(ep) = ctx.api.store.get(&ctx.endpoints.storage, ns, svc) else {
        return vec![];
    };
    let mut out = vec![];
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_i64());
        let Some(port) = port else { continue };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str() {
                out.push((ip.to_string(), port));
            }
        }
    }
    out
}

async fn serve_port(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    ns: String,
    svc: String,
    port_name: String,
    cancel: CancellationToken,
) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut inbound, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(%e, "service accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let list = backends(&ctx, &ns, &svc, &port_name);
        if list.is_empty() {
            tracing::debug!(service = %svc, "no ready endpoints; closing connection");
            continue;
        }
        let start = next.fetch_add(1, Ordering::Relaxed);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            // Try each backend once, starting from the round-robin position.
            for i in 0..list.len() {
                let (ip, port) = &list[(start + i) % list.len()];
                if let Ok(Ok(mut out)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect((ip.as_str(), *port as u16)),
                )
                .await
                {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    }
                    return;
                }
            }
        });
    }
}

/// Keeps one set of listeners per Service in line with its spec.
pub fn spawn(ctx: Arc<Ctx>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        // (ns, name) -> (ports signature, cancel for its listeners)
        let mut running: HashMap<(String, String), (String, CancellationToken)> = HashMap::new();
        let mut rx = ctx.api.store.subscribe();
        loop {
            let (services, _) = ctx.api.list(&ctx.services, None);
            let mut seen = vec![];
            for svc in &services {
                let key = (
                    meta_str(svc, "namespace").to_string(),
                    meta_str(svc, "name").to_string(),
                );
                let ip = svc
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let sig = format!(
                    "{ip} {}",
                    svc.pointer("/spec/ports").cloned().unwrap_or_default()
                );
                seen.push(key.clone());
                if running.get(&key).is_some_and(|(s, _)| *s == sig) {
                    continue;
                }
                if let Some((_, c)) = running.remove(&key) {
                    c.cancel();
                }
                if ip.is_empty() || ip == "None" {
                    continue;
                }
                let token = cancel.child_token();
                for p in svc
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let Some(port) = p["port"].as_u64() else {
                        continue;
                    };
                    let name = p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    match TcpListener::bind((ip.as_str(), port as u16)).await {
                        Ok(l) => {
                            tokio::spawn(serve_port(
                                ctx.clone(),
                                l,
                                key.0.clone(),
                                key.1.clone(),
                                name,
                                token.clone(),
                            ));
                        }
                        Err(e) => {
                            tracing::warn!(%e, service = %key.1, %ip, port, "cannot listen for service")
                        }
                    }
                }
                running.insert(key, (sig, token));
            }
            running.retain(|k, (_, c)| {
                let keep = seen.contains(k);
                if !keep {
                    c.cancel();
                }
                keep
            });
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                    while rx.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}
