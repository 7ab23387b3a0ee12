//! The single writer connection and group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` each commit costs an
//! fsync (about 0.7 ms here). Rather than one fsync per request, every [`Tx`] is a
//! `SAVEPOINT` inside a batch transaction; a committer task commits the batch whenever it
//! gets the writer, and each `Tx::commit` waits until its batch is durable. Under load the
//! batch grows and the fsync cost is shared; when idle a batch holds a single `Tx`.

use crate::{Store, StoreError, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, SqliteExecutor};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

pub(crate) struct Writer {
    conn: Arc<Mutex<WriterConn>>,
    dirty: Arc<Notify>,
}

pub(crate) struct WriterConn {
    conn: SqliteConnection,
    /// A batch transaction is open (BEGIN IMMEDIATE ran, COMMIT not yet).
    batch: Option<watch::Sender<Option<Result<(), String>>>>,
    /// A `Tx` was dropped without commit or rollback: its savepoint must be undone first.
    dangling_savepoint: bool,
}

impl WriterConn {
    /// Undoes a savepoint left by a `Tx` that was dropped mid-way (an error path).
    async fn clean_up(&mut self) -> StoreResult<()> {
        if self.dangling_savepoint {
            sqlx::query("ROLLBACK TO tx").execute(&mut self.conn).await?;
            sqlx::query("RELEASE tx").execute(&mut self.conn).await?;
            self.dangling_savepoint = false;
        }
        Ok(())
    }

    async fn commit_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let outcome = match sqlx::query("COMMIT").execute(&mut self.conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "batch commit failed; rolling back");
                let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
                Err(e.to_string())
            }
        };
        batch.send_replace(Some(outcome));
    }
}

impl Writer {
    pub(crate) async fn connect(options: &SqliteConnectOptions) -> StoreResult<Writer> {
        let conn = SqliteConnection::connect_with(options).await?;
        Ok(Writer {
            conn: Arc::new(Mutex::new(WriterConn { conn, batch: None, dangling_savepoint: false })),
            dirty: Arc::new(Notify::new()),
        })
    }

    pub(crate) async fn migrate(&self) -> StoreResult<()> {
        let mut guard = self.conn.lock().await;
        guard.clean_up().await?;
        guard.commit_batch().await;
        sqlx::migrate!("./migrations/sqlite").run(&mut guard.conn).await?;
        Ok(())
    }

    /// Commits any open batch, then checkpoints the whole WAL and truncates it.
    pub(crate) async fn checkpoint(&self) -> StoreResult<()> {
        let mut guard = self.conn.lock().await;
        guard.clean_up().await?;
        guard.commit_batch().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut guard.conn).await?;
        Ok(())
    }

    /// Starts the committer task. It ends when the store is dropped.
    pub(crate) fn spawn_committer(&self) {
        let conn = Arc::downgrade(&self.conn);
        let dirty = self.dirty.clone();
        tokio::spawn(async move {
            loop {
                dirty.notified().await;
                let Some(conn) = conn.upgrade() else { return };
                let mut guard = conn.lock().await;
                if let Err(e) = guard.clean_up().await {
                    tracing::error!(error = %e, "could not undo an abandoned savepoint");
                }
                guard.commit_batch().await;
            }
        });
    }
}

/// A write transaction. Commit with [`Tx::commit`]; dropping it without commit undoes its
/// writes.
pub struct Tx {
    guard: OwnedMutexGuard<WriterConn>,
    store: Store,
    scheduled_message: bool,
}

impl Tx {
    pub(crate) async fn begin(store: Store) -> StoreResult<Tx> {
        let mut guard = store.writer().conn.clone().lock_owned().await;
        guard.clean_up().await?;
        if guard.batch.is_none() {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut guard.conn).await?;
            guard.batch = Some(watch::channel(None).0);
        }
        sqlx::query("SAVEPOINT tx").execute(&mut guard.conn).await?;
        guard.dangling_savepoint = true;
        Ok(Tx { guard, store, scheduled_message: false })
    }

    /// The connection, for the repository methods of this crate.
    pub(crate) fn conn(&mut self) -> impl SqliteExecutor<'_> {
        &mut self.guard.conn
    }

    pub(crate) fn mark_message_scheduled(&mut self) {
        self.scheduled_message = true;
    }

    /// Makes the writes durable. Returns once the batch holding them is committed.
    pub async fn commit(mut self) -> StoreResult<()> {
        sqlx::query("RELEASE tx").execute(&mut self.guard.conn).await?;
        self.guard.dangling_savepoint = false;
        let mut done = match &self.guard.batch {
            Some(batch) => batch.subscribe(),
            None => return Err(StoreError::CommitFailed("no open batch".into())),
        };
        let store = self.store.clone();
        let scheduled_message = self.scheduled_message;
        // Dropping releases the writer and wakes the committer.
        drop(self);
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StoreError::CommitFailed("committer stopped".into()))?
            .clone();
        match outcome {
            Some(Ok(())) => {
                if scheduled_message {
                    store.notify_messages_changed();
                }
                Ok(())
            }
            Some(Err(e)) => Err(StoreError::CommitFailed(e)),
            None => Err(StoreError::CommitFailed("batch outcome missing".into())),
        }
    }

    /// Ends the transaction without waiting for its batch to reach the disk, for writes
    /// that are harmless to lose in a crash. Later writers see it at once, other
    /// connections once the batch commits (which the committer does right away).
    pub(crate) async fn commit_relaxed(mut self) -> StoreResult<()> {
        sqlx::query("RELEASE tx").execute(&mut self.guard.conn).await?;
        self.guard.dangling_savepoint = false;
        Ok(())
    }

    /// Undoes the writes of this transaction.
    pub async fn rollback(mut self) -> StoreResult<()> {
        self.guard.clean_up().await
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Whether committed, rolled back or abandoned on an error path, the batch must not
        // stay open: the committer commits it (undoing an abandoned savepoint first).
        self.store.writer().dirty.notify_one();
    }
}
