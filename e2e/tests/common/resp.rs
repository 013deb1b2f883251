//! A minimal RESP client for checking what a Redis pod holds: one command on a fresh
//! connection, an array-of-bulk-strings answer (`KEYS`, `HGETALL`, `LRANGE`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `args` on the Redis at `ip:6379` and returns its array answer; panics after 10 s or on
/// any other kind of answer.
pub async fn redis_array(ip: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut s = tokio::net::TcpStream::connect((ip, 6379)).await.unwrap();
    s.write_all(cmd.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(items) = parse_resp_array(&buf) {
            return items;
        }
        assert!(
            !buf.starts_with(b"-"),
            "{args:?}: {}",
            String::from_utf8_lossy(&buf)
        );
        assert!(Instant::now() < deadline, "{args:?}: no full answer");
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("redis answers")
            .unwrap();
        assert!(n > 0, "redis closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HGETALL key` of a hash of integers (balances).
pub async fn redis_hgetall(ip: &str, key: &str) -> BTreeMap<String, i64> {
    redis_array(ip, &["HGETALL", key])
        .await
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].parse().expect("integer balance")))
        .collect()
}

/// Checks the stored balances of a fleet whose players were credited `credited` in total from
/// the treasury: no player below zero, players + house = credited, treasury = -credited.
/// Returns the players' total and the house's balance.
pub fn assert_money_conserved(balances: &BTreeMap<String, i64>, credited: i64) -> (i64, i64) {
    let players: i64 = balances
        .iter()
        .filter(|(a, _)| a.starts_with("user:"))
        .map(|(a, b)| {
            assert!(*b >= 0, "{a} overdrawn: {b}");
            *b
        })
        .sum();
    let house = balances.get("house").copied().unwrap_or(0);
    assert_eq!(
        players + house,
        credited,
        "players' balances + house = credited"
    );
    assert_eq!(balances.get("treasury").copied(), Some(-credited));
    (players, house)
}

/// An array of bulk strings, once `buf` holds all of it.
pub fn parse_resp_array(buf: &[u8]) -> Option<Vec<String>> {
    fn line(buf: &[u8], at: usize) -> Option<(&str, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((std::str::from_utf8(&buf[at..end]).ok()?, end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = head.strip_prefix('*')?.parse().ok()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (len, start) = line(buf, at)?;
        let len: usize = len.strip_prefix('$')?.parse().ok()?;
        if buf.len() < start + len + 2 {
            return None;
        }
        out.push(String::from_utf8_lossy(&buf[start..start + len]).to_string());
        at = start + len + 2;
    }
    Some(out)
}
