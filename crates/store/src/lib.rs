//! payq's SQL store. All SQL lives in this crate: HTTP handlers and workers call typed
//! methods and never write a query.
//!
//! Reads go through a pool of read connections; writes go through a [`Tx`] on the single
//! writer connection. Commits are grouped: each `Tx` is a savepoint inside a batch
//! transaction that a committer task commits as soon as the writer is free, so many requests
//! share one fsync and every `commit()` returns only once its batch is durable.

mod dead_letters;
mod events;
mod idempotency;
mod inventory;
mod merchants;
mod messages;
mod orders;
mod refunds;
mod rows;
mod sim_ledger;
mod verify;
mod webhooks;
mod writer;

pub use dead_letters::DeadLetter;
pub use events::NewEvent;
pub use idempotency::{IdempotencyBegin, StoredResponse};
pub use inventory::Shortage;
pub use merchants::{MerchantCredentials, NewMerchant};
pub use messages::{ClaimedMessage, MessageStats, NewMessage, PendingMessage};
pub use orders::{NewOrder, NewPayment, OrderPage, PaymentRecord};
pub use sim_ledger::SimTxn;
pub use verify::Violation;
pub use writer::Tx;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to someone else).
    #[error("not found")]
    NotFound,
    /// A compare-and-set lost a race or a unique key already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be read back into its domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database URL is not one payq supports.
    #[error("unsupported database URL {0:?}: use sqlite://path")]
    UnsupportedUrl(String),
    /// The batch this write belonged to failed to commit.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Maps unique-constraint violations to [`StoreError::Conflict`].
    pub(crate) fn from_db(e: sqlx::Error) -> StoreError {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(db.message().to_owned());
        }
        StoreError::Db(e)
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Db(_) | StoreError::CommitFailed(_) | StoreError::Io(_) | StoreError::Conflict(_))
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    read: SqlitePool,
    writer: writer::Writer,
    /// Woken when a message is scheduled, so the dispatcher can re-plan its sleep.
    messages_changed: Notify,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs pending migrations.
    ///
    /// `url` is `sqlite://path/to/file.db`; the parent directory is created.
    pub async fn open(url: &str) -> StoreResult<Store> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk when commit() returns; grouping keeps it fast.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // The queue's hot pages stay in SQLite's own cache instead of costing a read
            // syscall each (the default cache is 2 MB).
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "268435456")
            .pragma("temp_store", "memory");
        // Checkpoints copy the WAL back into the database file and fsync it. Left to SQLite
        // they run inside whichever commit crosses the threshold, on the writer's critical
        // path; here a separate connection runs them in the background instead.
        let writer = writer::Writer::connect(&options.clone().pragma("wal_autocheckpoint", "0")).await?;
        let checkpointer = SqliteConnection::connect_with(&options).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone().read_only(true)).await?;
        let store = Store { inner: Arc::new(Inner { read, writer, messages_changed: Notify::new() }) };
        store.migrate().await?;
        store.inner.writer.spawn_committer();
        spawn_checkpointer(Arc::downgrade(&store.inner), checkpointer);
        Ok(store)
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        self.inner.writer.migrate().await
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Tx::begin(self.clone()).await
    }

    pub(crate) fn read(&self) -> &SqlitePool {
        &self.inner.read
    }

    pub(crate) fn writer(&self) -> &writer::Writer {
        &self.inner.writer
    }

    /// Resolves when a message was scheduled since the last call (or immediately if a
    /// wake-up is already pending).
    pub async fn messages_changed(&self) {
        self.inner.messages_changed.notified().await;
    }

    pub(crate) fn notify_messages_changed(&self) {
        self.inner.messages_changed.notify_one();
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(self.read()).await.is_ok()
    }
}

/// Runs a passive WAL checkpoint every 200 ms until the store is dropped. Passive
/// checkpoints never block the writer or readers.
fn spawn_checkpointer(store: std::sync::Weak<Inner>, mut conn: SqliteConnection) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if store.upgrade().is_none() {
                return;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    payq_domain::Timestamp::now().millis()
}
