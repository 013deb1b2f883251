//! Shared Redis plumbing for the Redis ledger and bus: connections that reconnect by themselves
//! and key naming.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A connection that reconnects on its own (with backoff) after Redis goes away. Created
/// lazily, so a process can start while Redis is down.
pub fn manager(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

pub use crate::clock::now_ms;

/// A connection for blocking commands (XREADGROUP BLOCK): its response timeout is longer than
/// any block the bus asks for.
pub fn blocking_manager(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// The URL scheme of a Redis Cluster: `redis+cluster://[user:pass@]h1:p1,h2:p2` (any of the
/// nodes; the client learns the rest from them).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Whether `url` names a Redis Cluster.
pub fn is_cluster(url: &str) -> bool {
    url.starts_with(CLUSTER_SCHEME)
}

/// The seed nodes of a cluster URL as plain `redis://` URLs, with the credentials (given once,
/// before the first node) on each.
pub fn cluster_nodes(url: &str) -> Result<Vec<String>, String> {
    let rest = url
        .strip_prefix(CLUSTER_SCHEME)
        .ok_or_else(|| format!("a cluster URL starts with {CLUSTER_SCHEME}"))?;
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{auth}{h}/"))
        .collect();
    if nodes.is_empty() {
        return Err(format!("{url:?} names no cluster node"));
    }
    Ok(nodes)
}

/// A connection to a single Redis or to a Redis Cluster; both reconnect on their own and are
/// cheap to clone.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    /// Routes each command by its keys' slot and follows MOVED/ASK redirections.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A connection to `url`: a Redis Cluster for [`CLUSTER_SCHEME`], else a single Redis. Lazy
/// either way: a process can start while Redis is down.
pub fn connect(url: &str) -> redis::RedisResult<Conn> {
    if !is_cluster(url) {
        return manager(url).map(Conn::Single);
    }
    let client = cluster_builder(url)?.build()?;
    Ok(Conn::Cluster(
        client.get_pending_async_connection_with_config(cluster_config()),
    ))
}

/// A cluster connection that receives shard-channel messages (`SSUBSCRIBE`) on `pushes`. It
/// speaks RESP3 (pushes need it) and subscribes its channels again after a node comes back.
pub fn cluster_pubsub(
    url: &str,
    pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
    let client = cluster_builder(url)?
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?;
    Ok(client.get_pending_async_connection_with_config(cluster_config()))
}

fn cluster_builder(url: &str) -> redis::RedisResult<redis::cluster::ClusterClientBuilder> {
    let nodes = cluster_nodes(url).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "cluster URL", e))
    })?;
    Ok(redis::cluster::ClusterClient::builder(nodes)
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(2))
        .retries(3)
        .max_retry_wait(500))
}

fn cluster_config() -> redis::cluster::ClusterConfig {
    redis::cluster::ClusterConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_nodes() {
        assert!(is_cluster("redis+cluster://a:1,b:2"));
        assert!(!is_cluster("redis://a:1"));
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/").unwrap(),
            ["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"]
        );
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@h1:1, h2:2").unwrap(),
            ["redis://:pw@h1:1/", "redis://:pw@h2:2/"]
        );
        assert!(cluster_nodes("redis+cluster://").is_err());
        assert!(cluster_nodes("redis://a").is_err());
    }
}
