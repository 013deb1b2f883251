//! Loopback address allocation. Counters are process-wide and start at a
//! random offset so clusters running side by side (parallel tests, other
//! processes) rarely pick the same addresses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

fn counter(cell: &'static OnceLock<AtomicU32>) -> &'static AtomicU32 {
    cell.get_or_init(|| {
        let b = *uuid::Uuid::new_v4().as_bytes();
        AtomicU32::new(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 60000)
    })
}

fn host(n: u32, first: u32) -> Option<String> {
    let h = n % 65536;
    let (hi, lo) = (h / 256, h % 256);
    (lo != 0 && lo != 255 && !(hi == 0 && lo < 2)).then(|| format!("127.{first}.{hi}.{lo}"))
}

/// Next Service clusterIP in 127.1.0.0/16.
pub fn next_service_ip() -> String {
    static C: OnceLock<AtomicU32> = OnceLock::new();
    loop {
        if let Some(ip) = host(counter(&C).fetch_add(1, Ordering::Relaxed), 1) {
            return ip;
        }
    }
}

/// Next pod IP in 127.0.0.0/16 (never 127.0.0.0/127.0.0.1).
pub fn next_pod_ip() -> String {
    static C: OnceLock<AtomicU32> = OnceLock::new();
    loop {
        if let Some(ip) = host(counter(&C).fetch_add(1, Ordering::Relaxed), 0) {
            return ip;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_skip_reserved_hosts() {
        for _ in 0..1000 {
            let ip = super::next_pod_ip();
            assert!(ip.starts_with("127.0."), "{ip}");
            assert_ne!(ip, "127.0.0.1");
            assert!(!ip.ends_with(".0") && !ip.ends_with(".255"), "{ip}");
        }
        assert!(super::next_service_ip().starts_with("127.1."));
    }
}
