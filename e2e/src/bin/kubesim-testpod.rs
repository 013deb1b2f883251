//! A tiny pod program for kubesim's own tests: serves `/healthz`, `/readyz`
//! and `/` on `$POD_IP:$PORT`, logs, and exits on SIGTERM after
//! `$TERM_DELAY_MS`. `POST /fail-ready` makes `/readyz` fail; `/` answers
//! with the pod name (so tests can see which pod a Service picked).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let ip = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let name = std::env::var("POD_NAME").unwrap_or_else(|_| "testpod".into());
    let delay = Duration::from_millis(
        std::env::var("TERM_DELAY_MS")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
    );
    if let Ok(code) = std::env::var("EXIT_AFTER_MS") {
        if let Ok(ms) = code.parse::<u64>() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("exiting as asked");
            return std::process::ExitCode::from(3);
        }
    }
    let listener = match TcpListener::bind((ip.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testpod: bind {ip}:{port}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "testpod {name} listening on {ip}:{port} args={:?}",
        std::env::args().skip(1).collect::<Vec<_>>()
    );
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::process::ExitCode::FAILURE;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                println!("testpod {name} got SIGTERM, exiting in {delay:?}");
                ready.store(false, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                return std::process::ExitCode::SUCCESS;
            }
            a = listener.accept() => {
                let Ok((mut s, _)) = a else { continue };
                let ready = ready.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (code, body) = match path.as_str() {
                        "/healthz" => (200, "ok".to_string()),
                        "/readyz" if ready.load(std::sync::atomic::Ordering::SeqCst) => (200, "ok".to_string()),
                        "/readyz" => (503, "not ready".to_string()),
                        "/fail-ready" => {
                            ready.store(false, std::sync::atomic::Ordering::SeqCst);
                            (200, "ok".to_string())
                        }
                        _ => (200, name.clone()),
                    };
                    let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        }
    }
}
