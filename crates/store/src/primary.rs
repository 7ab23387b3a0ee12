//! Which PostgreSQL server payq writes to, and how its pool follows a failover
//! (docs/operations.md, "Clustered services").
//!
//! With one server named this is only the pool's connection policy. With several
//! (`postgres://h1,h2/db?target_session_attrs=read-write`), payq starts on the first that
//! takes writes; every new connection is checked to take writes, as libpq does for
//! `read-write`. When a write finds the storage unavailable (the server is gone, or it
//! answers 25006 because it was demoted), a follower task asks each server in turn until one
//! takes writes, points the pool at it, and retires every connection opened before: none
//! stays pinned to a server that is gone or read-only.

use crate::StoreError;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest wait for one server to answer whether it takes writes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the follower asks again while no server takes writes.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long after a lost write the follower keeps asking while the server it writes to
/// still says it takes writes: a server shutting down answers for a moment, and a probe in
/// that moment must not end the search while the standby is being promoted.
const CONFIRM_LOSS: Duration = Duration::from_secs(3);

/// The servers a store's URL names and the one it writes to.
pub(crate) struct Primary {
    /// One URL per server, in the configured order.
    urls: Vec<String>,
    /// The server the pool connects to (an index into `urls`).
    current: AtomicUsize,
    /// When the pool was last pointed at a server: connections opened before are retired.
    switched: Mutex<Instant>,
    /// A write found the storage unavailable: the follower looks for the writable server.
    lost: Notify,
}

impl Primary {
    /// The servers of `urls`, writing to the first until told otherwise.
    pub(crate) fn new(urls: Vec<String>) -> Arc<Primary> {
        Arc::new(Primary {
            urls,
            current: AtomicUsize::new(0),
            switched: Mutex::new(Instant::now()),
            lost: Notify::new(),
        })
    }

    /// Whether several servers are named (and the pool must follow a failover).
    pub(crate) fn several(&self) -> bool {
        self.urls.len() > 1
    }

    /// The URL of the server payq writes to now.
    pub(crate) fn url(&self) -> &str {
        let current = self.current.load(Ordering::Relaxed);
        self.urls.get(current).or(self.urls.first()).map_or("", String::as_str)
    }

    /// Tells the follower that a write found the storage unavailable.
    pub(crate) fn report_unavailable(&self) {
        if self.several() {
            self.lost.notify_one();
        }
    }

    /// Whether a connection `age` old was opened before the pool last moved.
    fn is_retired(&self, age: Duration) -> bool {
        self.switched.lock().map(|at| age > at.elapsed()).unwrap_or(false)
    }

    /// Asks each server in order whether it takes writes; the first that does, if any.
    pub(crate) async fn find_writable(&self) -> Option<usize> {
        for (index, url) in self.urls.iter().enumerate() {
            match tokio::time::timeout(PROBE_TIMEOUT, takes_writes_at(url)).await {
                Ok(Ok(true)) => return Some(index),
                Ok(Ok(false)) => tracing::debug!(server = index, "PostgreSQL server is read-only"),
                Ok(Err(e)) => tracing::debug!(server = index, error = %e, "PostgreSQL server does not answer"),
                Err(_) => tracing::debug!(server = index, "PostgreSQL server does not answer in time"),
            }
        }
        None
    }

    /// Makes server `index` the one written to (before the pool is built).
    pub(crate) fn point_at(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    /// Points new connections at server `index` and retires the open ones.
    fn switch_to(&self, index: usize, pool: &AnyPool) -> Result<(), StoreError> {
        let url = self.urls.get(index).ok_or_else(|| StoreError::UnsupportedUrl(format!("server {index}")))?;
        pool.set_connect_options(AnyConnectOptions::from_str(url)?);
        self.current.store(index, Ordering::Relaxed);
        if let Ok(mut at) = self.switched.lock() {
            *at = Instant::now();
        }
        Ok(())
    }

    /// The pool's options. With one server, sqlx's own: every idle connection is pinged
    /// before use, so one that died with a restarted server is replaced rather than failing
    /// a request. With several, connections opened before a switch are retired, and every
    /// new one must take writes.
    pub(crate) fn pool_options(self: &Arc<Primary>) -> AnyPoolOptions {
        let options = AnyPoolOptions::new();
        if !self.several() {
            return options;
        }
        let primary = Arc::clone(self);
        options
            .before_acquire(move |_conn, meta| {
                let retired = primary.is_retired(meta.age);
                Box::pin(async move { Ok(!retired) })
            })
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if takes_writes(conn).await? {
                        Ok(())
                    } else {
                        Err(sqlx::Error::Protocol("the server is read-only (target_session_attrs=read-write)".into()))
                    }
                })
            })
    }
}

/// Whether the server at `url` takes writes.
async fn takes_writes_at(url: &str) -> Result<bool, sqlx::Error> {
    let mut conn = AnyConnection::connect(url).await?;
    let writable = takes_writes(&mut conn).await;
    let _ = conn.close().await;
    writable
}

/// Whether the server of `conn` takes writes (what libpq asks for `read-write`).
async fn takes_writes(conn: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only").fetch_one(conn).await?;
    Ok(read_only == "off")
}

/// Follows failovers until the store is dropped: woken by [`Primary::report_unavailable`],
/// it asks the servers until one takes writes and, if that is another server, moves the pool
/// there (connections to the same server that broke fail on their first use, as with one
/// server).
pub(crate) fn spawn_follower(store: Weak<crate::Inner>, primary: Arc<Primary>, pool: AnyPool) {
    if !primary.several() {
        return;
    }
    tokio::spawn(async move {
        while store.strong_count() > 0 {
            if tokio::time::timeout(Duration::from_secs(1), primary.lost.notified()).await.is_err() {
                continue;
            }
            let lost_at = Instant::now();
            let from = primary.current.load(Ordering::Relaxed);
            let found = loop {
                if store.strong_count() == 0 {
                    return;
                }
                match primary.find_writable().await {
                    Some(index) if index != from || lost_at.elapsed() >= CONFIRM_LOSS => break index,
                    _ => tokio::time::sleep(PROBE_INTERVAL).await,
                }
            };
            if found == from {
                continue;
            }
            match primary.switch_to(found, &pool) {
                Ok(()) => tracing::warn!(
                    from,
                    to = found,
                    searched_ms = lost_at.elapsed().as_millis() as u64,
                    "PostgreSQL failover: now writing to another server"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot point the pool at the writable server"),
            }
        }
    });
}
