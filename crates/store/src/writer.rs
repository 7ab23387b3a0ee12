//! Write transactions: group commit on SQLite, pooled transactions on PostgreSQL.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` each commit costs an
//! fsync (about 0.7 ms here). Rather than one fsync per request, every [`Tx`] is a
//! `SAVEPOINT` inside a batch transaction on the single writer connection; a committer task
//! commits the batch whenever it gets the writer, and each `Tx::commit` waits until its
//! batch is durable. Under load the batch grows and the fsync cost is shared; when idle a
//! batch holds a single `Tx`.
//!
//! PostgreSQL has many writers and groups commits itself, so there a `Tx` is a plain
//! transaction on a pooled connection. After a `Tx` that scheduled a message commits, a
//! `NOTIFY payq_messages` (coalesced, outside the transaction) wakes the dispatchers and
//! relays of every process.

use crate::{Store, StoreError, StoreResult};
use sqlx::{Any, Transaction};
use sqlx::{AnyConnection, AnyPool};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, watch};

/// The channel PostgreSQL notifies when messages were scheduled.
pub(crate) const MESSAGES_CHANNEL: &str = "payq_messages";

/// Where write transactions come from.
pub(crate) enum Writer {
    Sqlite(GroupCommit),
    Postgres(AnyPool),
}

/// The SQLite writer connection and its committer.
pub(crate) struct GroupCommit {
    conn: Arc<Mutex<WriterConn>>,
    dirty: Arc<Notify>,
}

/// Why a batch did not commit, as every `Tx` of the batch learns it.
#[derive(Debug, Clone)]
pub(crate) struct CommitError {
    /// The storage failed (disk full, I/O), not the statements.
    unavailable: bool,
    message: String,
}

impl From<CommitError> for StoreError {
    fn from(e: CommitError) -> StoreError {
        if e.unavailable { StoreError::Unavailable(e.message) } else { StoreError::CommitFailed(e.message) }
    }
}

pub(crate) struct WriterConn {
    conn: AnyConnection,
    /// A batch transaction is open (BEGIN IMMEDIATE ran, COMMIT not yet).
    batch: Option<watch::Sender<Option<Result<(), CommitError>>>>,
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
                let message = e.to_string();
                Err(CommitError { unavailable: StoreError::from(e).is_unavailable(), message })
            }
        };
        batch.send_replace(Some(outcome));
    }
}

impl GroupCommit {
    pub(crate) fn new(conn: AnyConnection) -> GroupCommit {
        GroupCommit {
            conn: Arc::new(Mutex::new(WriterConn { conn, batch: None, dangling_savepoint: false })),
            dirty: Arc::new(Notify::new()),
        }
    }

    /// Runs `migrator` on the writer connection (after committing any open batch).
    pub(crate) async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> StoreResult<()> {
        let mut guard = self.conn.lock().await;
        guard.clean_up().await?;
        guard.commit_batch().await;
        migrator.run(&mut guard.conn).await?;
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

enum TxConn {
    Sqlite(OwnedMutexGuard<WriterConn>),
    /// `None` once committed or rolled back.
    Postgres(Option<Transaction<'static, Any>>),
}

/// A write transaction. Commit with [`Tx::commit`]; dropping it without commit undoes its
/// writes.
pub struct Tx {
    conn: TxConn,
    store: Store,
    scheduled_message: bool,
}

impl Tx {
    pub(crate) async fn begin(store: Store) -> StoreResult<Tx> {
        let started = Tx::open(&store).await;
        if started.is_err() {
            store.note_write(&started);
        }
        Ok(Tx { conn: started?, store, scheduled_message: false })
    }

    async fn open(store: &Store) -> StoreResult<TxConn> {
        Ok(match store.writer() {
            Writer::Sqlite(group) => {
                let mut guard = group.conn.clone().lock_owned().await;
                guard.clean_up().await?;
                if guard.batch.is_none() {
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut guard.conn).await?;
                    guard.batch = Some(watch::channel(None).0);
                }
                sqlx::query("SAVEPOINT tx").execute(&mut guard.conn).await?;
                guard.dangling_savepoint = true;
                TxConn::Sqlite(guard)
            }
            Writer::Postgres(pool) => TxConn::Postgres(Some(begin_retrying_once(pool).await?)),
        })
    }

    /// The connection, for the repository methods of this crate.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.conn {
            TxConn::Sqlite(guard) => &mut guard.conn,
            TxConn::Postgres(Some(tx)) => tx,
            // Commit and rollback consume the `Tx`, so no method runs after them.
            TxConn::Postgres(None) => unreachable!("transaction used after it ended"),
        }
    }

    /// The backend this transaction writes to.
    pub(crate) fn backend(&self) -> crate::Backend {
        self.store.backend()
    }

    /// Whether every event is announced, not only those for webhooks.
    pub fn announces_all_events(&self) -> bool {
        self.store.announces_all_events()
    }

    pub(crate) fn mark_message_scheduled(&mut self) {
        self.scheduled_message = true;
    }

    /// Makes the writes durable. Returns once the batch holding them is committed.
    pub async fn commit(self) -> StoreResult<()> {
        let store = self.store.clone();
        let outcome = self.commit_durably().await;
        store.note_write(&outcome);
        outcome
    }

    async fn commit_durably(mut self) -> StoreResult<()> {
        let store = self.store.clone();
        let scheduled_message = self.scheduled_message;
        match &mut self.conn {
            TxConn::Sqlite(guard) => {
                sqlx::query("RELEASE tx").execute(&mut guard.conn).await?;
                guard.dangling_savepoint = false;
                let mut done = match &guard.batch {
                    Some(batch) => batch.subscribe(),
                    None => return Err(StoreError::CommitFailed("no open batch".into())),
                };
                // Dropping releases the writer and wakes the committer.
                drop(self);
                let outcome = done
                    .wait_for(Option::is_some)
                    .await
                    .map_err(|_| StoreError::CommitFailed("committer stopped".into()))?
                    .clone();
                match outcome {
                    Some(Ok(())) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(StoreError::CommitFailed("batch outcome missing".into())),
                }
            }
            TxConn::Postgres(tx) => {
                let Some(tx) = tx.take() else {
                    return Err(StoreError::CommitFailed("transaction already ended".into()));
                };
                tx.commit().await?;
                if scheduled_message {
                    // After the commit, coalesced, outside any transaction: a NOTIFY inside
                    // a transaction holds PostgreSQL's notification lock through the commit's
                    // fsync and so makes every committing writer wait in line.
                    store.announce_messages();
                }
            }
        }
        if scheduled_message {
            store.notify_messages_changed();
        }
        Ok(())
    }

    /// Ends the transaction without waiting for it to reach the disk, for writes that are
    /// harmless to lose in a crash (claims).
    pub(crate) async fn commit_relaxed(mut self) -> StoreResult<()> {
        match &mut self.conn {
            // Later writers see it at once, other connections once the batch commits (which
            // the committer does right away).
            TxConn::Sqlite(guard) => {
                sqlx::query("RELEASE tx").execute(&mut guard.conn).await?;
                guard.dangling_savepoint = false;
            }
            TxConn::Postgres(tx) => {
                if let Some(mut tx) = tx.take() {
                    sqlx::query("SET LOCAL synchronous_commit TO OFF").execute(&mut *tx).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(())
    }

    /// Undoes the writes of this transaction.
    pub async fn rollback(mut self) -> StoreResult<()> {
        match &mut self.conn {
            TxConn::Sqlite(guard) => guard.clean_up().await,
            TxConn::Postgres(tx) => match tx.take() {
                Some(tx) => Ok(tx.rollback().await?),
                None => Ok(()),
            },
        }
    }
}

/// Starts a PostgreSQL transaction, once more on a fresh connection if the first one was
/// found dead (a restarted server or a terminated backend): nothing has run yet, so the
/// retry is safe.
async fn begin_retrying_once(pool: &AnyPool) -> StoreResult<Transaction<'static, Any>> {
    match pool.begin().await {
        Ok(tx) => Ok(tx),
        Err(e) => match StoreError::from(e) {
            e if e.is_unavailable() => Ok(pool.begin().await?),
            e => Err(e),
        },
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Whether committed, rolled back or abandoned on an error path, the batch must not
        // stay open: the committer commits it (undoing an abandoned savepoint first). A
        // PostgreSQL transaction dropped unfinished rolls back by itself.
        if let Writer::Sqlite(group) = self.store.writer() {
            group.dirty.notify_one();
        }
    }
}
