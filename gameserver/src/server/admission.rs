//! Which TCP connections a port takes: a cap on open connections in all and per client IP.
//! A connection holds its [`Permit`] for as long as its socket is open (an upgraded
//! WebSocket included), so the counts are of sockets, not of requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Connection caps of one listening port (0 = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections on the port.
    pub max_total: usize,
    /// Open connections from one client IP address.
    pub max_per_ip: usize,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The port holds `max_total` connections.
    Full,
    /// The client's address holds `max_per_ip` connections.
    PerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "connection_cap",
            Self::PerIp => "ip_cap",
        }
    }
}

/// The admission rule, apart from the bookkeeping: `total` and `from_ip` are the connections
/// open now.
pub fn admit(limits: ConnLimits, total: usize, from_ip: usize) -> Result<(), Refusal> {
    if limits.max_total > 0 && total >= limits.max_total {
        return Err(Refusal::Full);
    }
    if limits.max_per_ip > 0 && from_ip >= limits.max_per_ip {
        return Err(Refusal::PerIp);
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The open-connection counts of one port.
#[derive(Clone, Default)]
pub struct Admission {
    limits: ConnLimits,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Counts stay consistent under a panic elsewhere: each change is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for a new connection from `ip`, or why there is none.
    pub fn try_admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let mut c = self.lock();
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        admit(self.limits, c.total, from_ip)?;
        c.total += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Permit {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    admission: Admission,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.admission.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_rule_refuses_at_the_caps_and_zero_means_unlimited() {
        let l = ConnLimits {
            max_total: 3,
            max_per_ip: 2,
        };
        assert_eq!(admit(l, 2, 1), Ok(()));
        assert_eq!(admit(l, 3, 0), Err(Refusal::Full));
        assert_eq!(admit(l, 1, 2), Err(Refusal::PerIp));
        assert_eq!(admit(ConnLimits::default(), 1_000_000, 1_000_000), Ok(()));
    }

    #[test]
    fn permits_count_per_address_and_free_their_place_when_dropped() {
        let a = Admission::new(ConnLimits {
            max_total: 3,
            max_per_ip: 2,
        });
        let p1 = a.try_admit(ip(2)).unwrap();
        let _p2 = a.try_admit(ip(2)).unwrap();
        assert_eq!(a.try_admit(ip(2)).err(), Some(Refusal::PerIp));
        let _p3 = a.try_admit(ip(3)).unwrap();
        assert_eq!(a.try_admit(ip(4)).err(), Some(Refusal::Full));
        drop(p1);
        assert_eq!(a.open(), 2);
        assert!(a.try_admit(ip(2)).is_ok());
    }
}
