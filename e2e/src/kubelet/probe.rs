//! HTTP, TCP and exec probes.

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probe timing from the spec (Kubernetes defaults).
#[derive(Clone, Debug)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Value) -> Self {
        let secs = |k: &str, d: u64| {
            Duration::from_secs(probe.get(k).and_then(Value::as_u64).unwrap_or(d))
        };
        Self {
            initial_delay: secs("initialDelaySeconds", 0),
            period: secs("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: secs("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: probe
                .get("successThreshold")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1) as u32,
            failure_threshold: probe
                .get("failureThreshold")
                .and_then(Value::as_u64)
                .unwrap_or(3)
                .max(1) as u32,
        }
    }
}

/// Resolves a probe port (number or container port name).
fn port(container: &Value, p: &Value) -> Option<u16> {
    match p {
        Value::Number(n) => n.as_u64().map(|n| n as u16),
        Value::String(s) => s.parse().ok().or_else(|| {
            container["ports"]
                .as_array()?
                .iter()
                .find(|cp| cp["name"] == s.as_str())?["containerPort"]
                .as_u64()
                .map(|n| n as u16)
        }),
        _ => None,
    }
}

/// Runs one probe; true on success.
pub async fn run(probe: &Value, container: &Value, pod_ip: &str, timeout: Duration) -> bool {
    let fut = async {
        if let Some(h) = probe.get("httpGet") {
            let Some(p) = port(container, &h["port"]) else {
                return false;
            };
            let host = h.get("host").and_then(Value::as_str).unwrap_or(pod_ip);
            let path = h.get("path").and_then(Value::as_str).unwrap_or("/");
            let Ok(mut s) = TcpStream::connect((host, p)).await else {
                return false;
            };
            let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{p}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got < 12 {
                match s.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let line = String::from_utf8_lossy(&buf[..got]);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (200..400).contains(&code)
        } else if let Some(t) = probe.get("tcpSocket") {
            let Some(p) = port(container, &t["port"]) else {
                return false;
            };
            let host = t.get("host").and_then(Value::as_str).unwrap_or(pod_ip);
            TcpStream::connect((host, p)).await.is_ok()
        } else if let Some(e) = probe.get("exec") {
            let cmd: Vec<String> = e["command"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            let Some((prog, args)) = cmd.split_first() else {
                return false;
            };
            tokio::process::Command::new(prog)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success())
        } else {
            // grpc probes are not supported; treat as passing.
            true
        }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
}
