//! Connecting to RabbitMQ with back-off, for the long-running parts (relay, consumers).
//! Each part owns its connection and, when it drops, reconnects here and declares what it
//! needs again; RabbitMQ keeps unacknowledged deliveries and hands them out again.
//!
//! `PAYQ_AMQP_URL` may name the nodes of a cluster, as full URLs separated by commas
//! (docs/operations.md, "Clustered services"): payq connects to the first that answers, and
//! when a connection is lost it starts again from the node after the one it had.

use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait for one node to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The node URLs an AMQP setting names, in order (one, or several separated by commas).
pub fn nodes(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|node| !node.is_empty()).collect()
}

/// Why no node accepted a connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The setting names no node.
    #[error("no RabbitMQ node is named")]
    NoNode,
    /// Every node refused or failed; the last one's error.
    #[error("no RabbitMQ node answered (last: {0})")]
    Refused(lapin::Error),
    /// Every node failed, the last by not answering in time.
    #[error("no RabbitMQ node answered (last: no answer within {0:?})")]
    Timeout(Duration),
}

/// Connects to the first of `url`'s nodes that answers, trying each once in order from
/// `start` (wrapping around); answers the connection and the index of its node.
pub async fn connect_first(url: &str, start: usize) -> Result<(Connection, usize), ConnectError> {
    let nodes = nodes(url);
    let mut last = ConnectError::NoNode;
    for i in 0..nodes.len() {
        let index = (start + i) % nodes.len();
        let Some(node) = nodes.get(index) else { continue };
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(node, ConnectionProperties::default())).await {
            Ok(Ok(conn)) => return Ok((conn, index)),
            Ok(Err(e)) => last = ConnectError::Refused(e),
            Err(_) => last = ConnectError::Timeout(CONNECT_TIMEOUT),
        }
    }
    Err(last)
}

/// Where a long-running part connects next: the node after the one it last had.
#[derive(Debug, Default)]
pub struct NodeCursor {
    next: usize,
}

/// Connects to one of `url`'s nodes (from `cursor`'s, see [`NodeCursor`]), retrying with
/// exponential back-off (200 ms up to 5 s) until one answers or `shutdown` is cancelled
/// (then `None`). `who` names the caller in the logs.
pub async fn connect_until(
    url: &str,
    cursor: &mut NodeCursor,
    shutdown: &CancellationToken,
    who: &str,
) -> Option<Connection> {
    let mut backoff = Duration::from_millis(200);
    let several = nodes(url).len() > 1;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match connect_first(url, cursor.next).await {
            Ok((conn, node)) => {
                if several {
                    tracing::info!(who, node, "connected to RabbitMQ node");
                }
                // A lost connection tries the next node first: the one it had may be down.
                cursor.next = node + 1;
                return Some(conn);
            }
            Err(e) => {
                tracing::warn!(error = %e, who, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ unreachable")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::nodes;

    #[test]
    fn a_setting_names_its_nodes_in_order() {
        assert_eq!(nodes("amqp://h1:5672/%2f"), ["amqp://h1:5672/%2f"]);
        assert_eq!(nodes(" amqp://h1/%2f , amqp://h2/%2f,"), ["amqp://h1/%2f", "amqp://h2/%2f"]);
        assert!(nodes(" , ").is_empty());
    }
}
