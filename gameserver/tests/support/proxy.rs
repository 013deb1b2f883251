//! A fault-injecting TCP proxy between a process under test and its Redis: it forwards bytes
//! both ways until told to stall (hold everything, as a partition or a paused network path
//! does), cut (close every connection and refuse new ones), or drop the reply to one request
//! (forward a request that contains a pattern, then close without its answer — the request ran,
//! the client never hears).
//!
//! Plain threads and blocking sockets, so it keeps working whatever the test's runtime is
//! doing; a socket error only ends that connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct State {
    stalled: bool,
    cut: bool,
    /// One-shot: the next request containing this pattern gets no reply.
    drop_reply: Option<Vec<u8>>,
    /// Connections open now, to shut down on `cut`.
    open: Vec<(usize, TcpStream, TcpStream)>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    fired: AtomicUsize,
    accepted: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks while stalled; false once the proxy is stopping or cut.
    fn wait_flowing(&self) -> bool {
        let mut s = self.lock();
        while s.stalled && !s.cut && !self.stop.load(Ordering::Acquire) {
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        !s.cut && !self.stop.load(Ordering::Acquire)
    }
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            fired: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        thread::spawn(move || accept_loop(listener, upstream, s));
        Self { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Hold every byte in both directions (nothing is lost) until [`FaultProxy::resume`].
    pub fn stall(&self) {
        self.shared.lock().stalled = true;
    }

    pub fn resume(&self) {
        self.shared.lock().stalled = false;
        self.shared.changed.notify_all();
    }

    /// Close every connection at once and refuse new ones until [`FaultProxy::heal`].
    pub fn cut(&self) {
        let mut s = self.shared.lock();
        s.cut = true;
        for (_, a, b) in s.open.drain(..) {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        drop(s);
        self.shared.changed.notify_all();
    }

    pub fn heal(&self) {
        self.shared.lock().cut = false;
    }

    /// The next request containing `pattern` reaches the server, but its reply never reaches
    /// the client: the proxy closes that connection once the request is forwarded.
    pub fn drop_reply_after(&self, pattern: &[u8]) {
        self.shared.lock().drop_reply = Some(pattern.to_vec());
    }

    /// How many replies were dropped so far.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::Acquire)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::Acquire)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.cut();
        // Unblock the accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept_loop(listener: TcpListener, upstream: u16, shared: Arc<Shared>) {
    for (id, client) in listener.incoming().enumerate() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        if shared.lock().cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        shared.lock().open.push((id, c3, s3));
        let dropping = Arc::new(AtomicBool::new(false));
        let (up, down) = (Arc::clone(&shared), Arc::clone(&shared));
        let (d_up, d_down) = (Arc::clone(&dropping), dropping);
        thread::spawn(move || forward_requests(client, server, up, d_up, id));
        thread::spawn(move || forward_replies(s2, c2, down, d_down, id));
    }
}

/// Ends a connection on both sides (the other direction's thread then ends too).
fn close(a: &TcpStream, b: &TcpStream, shared: &Shared, id: usize) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
    shared.lock().open.retain(|(i, _, _)| *i != id);
}

/// Client → server, watching for the armed pattern (also across read boundaries).
fn forward_requests(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    dropping: Arc<AtomicBool>,
    id: usize,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !shared.wait_flowing() {
            break;
        }
        let hit = {
            let mut s = shared.lock();
            let hit = s.drop_reply.as_ref().is_some_and(|p| {
                let mut window = tail.clone();
                window.extend_from_slice(&buf[..n]);
                window.windows(p.len().max(1)).any(|w| w == p.as_slice())
            });
            if hit {
                s.drop_reply = None;
            }
            if let Some(p) = &s.drop_reply {
                let keep = p.len().saturating_sub(1);
                tail.extend_from_slice(&buf[..n]);
                let cut = tail.len().saturating_sub(keep);
                tail.drain(..cut);
            }
            hit
        };
        if hit {
            dropping.store(true, Ordering::Release);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if hit {
            // Let the server run it, then close both sides: the reply is never forwarded.
            thread::sleep(Duration::from_millis(100));
            shared.fired.fetch_add(1, Ordering::AcqRel);
            break;
        }
    }
    close(&from, &to, &shared, id);
}

/// Server → client; discards everything once the connection's reply is to be dropped.
fn forward_replies(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: Arc<Shared>,
    dropping: Arc<AtomicBool>,
    id: usize,
) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if dropping.load(Ordering::Acquire) {
            continue;
        }
        if !shared.wait_flowing() {
            break;
        }
        if dropping.load(Ordering::Acquire) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    close(&from, &to, &shared, id);
}
