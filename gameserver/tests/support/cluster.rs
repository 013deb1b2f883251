//! A real Redis Cluster on loopback: `n` `redis-server --cluster-enabled yes` masters (no
//! replicas) joined by `redis-cli --cluster create`, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    /// `n` masters (at least 3, as `redis-cli --cluster create` requires), every slot covered.
    pub fn start(n: usize) -> Self {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!(
            "gameserver-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            children: (0..n).map(|_| None).collect(),
            ports,
            dir,
        };
        for i in 0..n {
            // A port picked free may be taken before the server binds it (the ephemeral range
            // is shared with outgoing connections): pick again.
            let mut attempts = 0;
            while let Err(why) = cluster.spawn(i) {
                attempts += 1;
                assert!(attempts < 5, "{why}");
                cluster.ports[i] = free_port();
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be on PATH (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok();
        cluster
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Starts node `i`; its log when it does not come up.
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let port = self.ports[i];
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        // The cluster bus port is the data port + 10000 unless set; a free port of its own
        // keeps that from landing above 65535 or on a port in use.
        let bus = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--cluster-port",
                &bus.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                // Long enough that a loaded test machine never has nodes declare each other failed
                // (the cluster would refuse every command); a restarted node rejoins at once.
                "--cluster-node-timeout",
                "15000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                node_dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (apt-get install redis-server)");
        self.children[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers(port, "PING").starts_with("+PONG") {
            let exited = self.children[i]
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                if let Some(mut c) = self.children[i].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!(
                    "redis-server {port} did not start: {}",
                    std::fs::read_to_string(node_dir.join("log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL node `i` and start it again on the same port and cluster config: it keeps its
    /// slots and comes back empty (the nodes keep no data on disk), like a cluster node
    /// restarted without persistence.
    pub fn restart_node(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(why) = self.spawn(i) {
            panic!("{why}");
        }
        self.wait_ok();
    }

    /// Every node sees every slot served.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for &port in &self.ports {
            while !self
                .answers(port, "CLUSTER INFO")
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "cluster not ok on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn answers(&self, port: u16, command: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 4096];
        if s.write_all(format!("{command}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
