//! Connecting to RabbitMQ with back-off, for the long-running parts (relay, consumers).
//! Each part owns its connection and, when it drops, reconnects here and declares what it
//! needs again; RabbitMQ keeps unacknowledged deliveries and hands them out again.

use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Connects to `url`, retrying with exponential back-off (200 ms up to 5 s) until it
/// succeeds or `shutdown` is cancelled (then `None`). `who` names the caller in the logs.
pub async fn connect_until(url: &str, shutdown: &CancellationToken, who: &str) -> Option<Connection> {
    let mut backoff = Duration::from_millis(200);
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, ConnectionProperties::default()))
            .await
        {
            Ok(Ok(conn)) => return Some(conn),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, who, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ unreachable")
            }
            Err(_) => tracing::warn!(who, "RabbitMQ connect timed out"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
