//! Test harness: a real `redis-server` (from PATH) on a free loopback port, killed on drop;
//! optionally persisted with AOF, so that a SIGKILL and a restart keep its data.
#![allow(dead_code)]

pub mod cluster;
pub mod fleet;
pub mod proxy;

#[allow(unused_imports)]
pub use cluster::RedisCluster;
#[allow(unused_imports)]
pub use proxy::FaultProxy;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// `appendfsync` policy when AOF is on.
    aof: Option<&'static str>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With AOF on (`appendfsync` = `fsync`: "always" or "everysec"): what a ledger's Redis
    /// must run with. Its data outlives [`RedisServer::kill`] and comes back on restart.
    pub fn start_aof(fsync: &'static str) -> Self {
        Self::start_with(Some(fsync))
    }

    fn start_with(aof: Option<&'static str>) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("gameserver-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
            aof,
        };
        server.spawn();
        server
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let (appendonly, fsync) = match self.aof {
            Some(policy) => ("yes", policy),
            None => ("no", "everysec"),
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                fsync,
                "--dir",
                self.dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (apt-get install redis-server)");
        self.child = Some(child);
        // Up once it answers PONG (a server loading its AOF answers -LOADING first).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// Kill the server (SIGKILL). Without AOF its data is lost, like a crashed Redis without
    /// persistence; with AOF every write it answered comes back on restart.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `sig` (`STOP`, `CONT`, `KILL`, …) to a process.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Starts `gw` and serves its player routes on a free loopback port (with its connection
/// caps) until `stop`; returns the address.
pub async fn serve_gateway(
    gw: &std::sync::Arc<gameserver::gateway::Gateway>,
    stop: &tokio_util::sync::CancellationToken,
) -> std::net::SocketAddr {
    use gameserver::server;
    gw.start(stop.clone()).unwrap();
    let l = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(server::serve(
        l,
        gw.router(),
        stop.clone(),
        gw.serve_options(),
    ));
    addr
}
