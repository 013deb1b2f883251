//! `gameserver bench` runs driving the scenario tests, and pod readiness.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::process::{Child, Command};

pub fn gameserver_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    for d in [dir, dir.parent().unwrap()] {
        let p = d.join("gameserver");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "gameserver binary not found next to {}: run `cargo build --workspace --bins`",
        exe.display()
    );
}

/// A `gameserver bench` run in its own process group (it spawns workers), killed with the group.
pub struct Bench {
    child: Option<Child>,
    pub started: Instant,
}

impl Bench {
    /// `connections` players signed with `jwt`, named `<prefix>-<n>`, in 20 rooms.
    pub fn start(jwt: &str, url: &str, connections: usize, prefix: &str, extra: &[&str]) -> Bench {
        let mut cmd = Command::new(gameserver_bin());
        cmd.args(["bench", "--url", url, "--connections"])
            .arg(connections.to_string())
            // 20 rooms: the 1,500-connection surge fits the default room capacity (100 players
            // per room, counted across gateways) with room to spare.
            .args([
                "--rooms",
                "20",
                "--connect-rate",
                "5000",
                "--user-prefix",
                prefix,
                "--json",
            ])
            .args(extra)
            .env("JWT_SECRET", jwt)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            // Not read while the bench runs: a full pipe would stall its players (and the
            // gateways would then close them for missed heartbeats).
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        Bench {
            child: Some(cmd.spawn().expect("bench starts")),
            started: Instant::now(),
        }
    }

    pub fn kill_group(&self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }

    pub async fn report(mut self, timeout: Duration) -> Value {
        let child = self.child.take().expect("bench running");
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .expect("bench finishes in time")
            .expect("bench output");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("bench report is not JSON ({e}): {text}"))
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Ready and not terminating.
pub fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
