//! The store's background tasks: the SQLite WAL checkpointer, and the wake-ups of the
//! engine's dispatchers when another process (PostgreSQL `NOTIFY`) or this one scheduled work.

use crate::Inner;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Runs a passive WAL checkpoint every 200 ms, on a thread of its own (checkpoints write
/// and fsync the database file), until the store is dropped. Passive checkpoints never
/// block the writer or readers.
pub(crate) fn spawn_checkpointer(store: std::sync::Weak<Inner>, conn: rusqlite::Connection) {
    let spawned = std::thread::Builder::new().name("payq-checkpoint".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if store.strong_count() == 0 {
                return;
            }
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the WAL checkpointer; the WAL grows until restart");
    }
}

/// Sends `NOTIFY payq_messages` whenever messages were committed, one for however many
/// commits came since the last one (a `Notify` holds at most one wake-up).
pub(crate) fn spawn_announcer(store: std::sync::Weak<Inner>, announce: Arc<Notify>, pool: AnyPool) {
    tokio::spawn(async move {
        while store.strong_count() > 0 {
            // Wake up now and then to notice that the store is gone.
            if tokio::time::timeout(Duration::from_secs(1), announce.notified()).await.is_err() {
                continue;
            }
            crate::db::pg_round_trips(1);
            if let Err(e) =
                sqlx::query("SELECT pg_notify($1, '')").bind(crate::writer::MESSAGES_CHANNEL).execute(&pool).await
            {
                tracing::warn!(error = %e, "could not announce new messages; other processes find them by polling");
            }
        }
    });
}

/// Listens for `NOTIFY payq_messages` (sent by every commit that scheduled a message, in any
/// process) and wakes this process's dispatcher. Reconnects with back-off; while it is down
/// the dispatcher still wakes at the next due time or its polling interval.
/// It listens on the server payq writes to, and follows it after a failover.
pub(crate) fn spawn_listener(store: std::sync::Weak<Inner>, primary: Arc<crate::primary::Primary>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let server = primary.url().to_owned();
            let mut listener = match sqlx::postgres::PgListener::connect(&server).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for message notifications; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = listener.listen(crate::writer::MESSAGES_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(200);
            loop {
                let Some(inner) = store.upgrade() else { return };
                drop(inner);
                match tokio::time::timeout(Duration::from_secs(1), listener.recv()).await {
                    // After a failover, commits notify on the new server.
                    Err(_) if primary.url() != server => break,
                    Err(_) => continue,
                    Ok(Ok(_)) => {
                        if let Some(inner) = store.upgrade() {
                            inner.wake_all();
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "message notifications interrupted; reconnecting");
                        // Something may have been scheduled while we were away.
                        if let Some(inner) = store.upgrade() {
                            inner.wake_all();
                        }
                        break;
                    }
                }
            }
        }
    });
}
