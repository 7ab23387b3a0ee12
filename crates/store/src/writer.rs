//! Write transactions: group commit on SQLite, pooled transactions on PostgreSQL.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` each commit costs an
//! fsync (about 0.7 ms here). Rather than one fsync per request, every [`Tx`] is a
//! `SAVEPOINT` inside a batch transaction on the single writer connection; a committer task
//! commits the batch whenever it gets the writer, and each `Tx::commit` waits until its
//! batch is durable. Under load the batch grows and the fsync cost is shared; when idle a
//! batch holds a single `Tx`. Statements run in place on the calling task (microseconds
//! each); only the `COMMIT`, which waits for the disk, moves to a blocking thread, once per
//! batch.
//!
//! PostgreSQL has many writers and groups commits itself, so there a `Tx` is a plain
//! transaction on a pooled connection. After a `Tx` that scheduled a message commits, a
//! `NOTIFY payq_messages` (coalesced, outside the transaction) wakes the dispatchers and
//! relays of every process.

use crate::db::{Executor, lock};
use crate::{Store, StoreError, StoreResult};
use sqlx::AnyPool;
use sqlx::{Any, Transaction};
use std::path::PathBuf;
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
    state: Arc<Mutex<WriterState>>,
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

/// The writer connection and what is open on it. Held (through the async mutex) by one
/// `Tx` or the committer at a time; the inner lock only lets the `COMMIT` run on a
/// blocking thread.
pub(crate) struct WriterState {
    conn: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// The database file, for migrations (which run on a connection of their own).
    path: PathBuf,
    /// A batch transaction is open (BEGIN IMMEDIATE ran, COMMIT not yet).
    batch: Option<watch::Sender<Option<Result<(), CommitError>>>>,
    /// A `Tx` was dropped without commit or rollback: its savepoint must be undone first.
    dangling_savepoint: bool,
    /// Transactions in the open batch.
    batch_size: u32,
}

/// Runs one statement without parameters on the writer, from its prepared-statement cache
/// (stepping through any rows it returns, as a `PRAGMA` does).
fn run(conn: &std::sync::Mutex<rusqlite::Connection>, sql: &str) -> StoreResult<()> {
    let conn = lock(conn);
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    Ok(())
}

/// Runs one statement that waits for the disk (a commit's or a checkpoint's fsync) on a
/// blocking thread, so the async threads keep serving requests meanwhile.
async fn run_blocking(conn: &Arc<std::sync::Mutex<rusqlite::Connection>>, sql: &'static str) -> StoreResult<()> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || run(&conn, sql))
        .await
        .unwrap_or_else(|join| Err(StoreError::CommitFailed(join.to_string())))
}

impl WriterState {
    /// Undoes a savepoint left by a `Tx` that was dropped mid-way (an error path).
    fn clean_up(&mut self) -> StoreResult<()> {
        if self.dangling_savepoint {
            run(&self.conn, "ROLLBACK TO tx")?;
            run(&self.conn, "RELEASE tx")?;
            self.dangling_savepoint = false;
        }
        Ok(())
    }

    async fn commit_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        metrics::histogram!("payq_store_batch_transactions").record(f64::from(self.batch_size));
        self.batch_size = 0;
        let started = std::time::Instant::now();
        let committed = run_blocking(&self.conn, "COMMIT").await;
        metrics::histogram!("payq_store_commit_seconds").record(started.elapsed().as_secs_f64());
        let outcome = match committed {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "batch commit failed; rolling back");
                if let Err(rollback) = lock(&self.conn).execute_batch("ROLLBACK") {
                    tracing::warn!(error = %rollback, "rollback after a failed commit failed");
                }
                Err(CommitError { unavailable: e.is_unavailable(), message: e.to_string() })
            }
        };
        batch.send_replace(Some(outcome));
    }
}

impl GroupCommit {
    pub(crate) fn new(conn: rusqlite::Connection, path: PathBuf) -> GroupCommit {
        GroupCommit {
            state: Arc::new(Mutex::new(WriterState {
                conn: Arc::new(std::sync::Mutex::new(conn)),
                path,
                batch: None,
                dangling_savepoint: false,
                batch_size: 0,
            })),
            dirty: Arc::new(Notify::new()),
        }
    }

    /// Runs `migrator` (after committing any open batch, and holding the writer meanwhile)
    /// on a connection of its own: migrations are recorded the way sqlx records them.
    pub(crate) async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> StoreResult<()> {
        let mut guard = self.state.lock().await;
        guard.clean_up()?;
        guard.commit_batch().await;
        migrate_sqlite(&guard.path, migrator).await
    }

    /// Commits any open batch, then checkpoints the whole WAL and truncates it.
    pub(crate) async fn checkpoint(&self) -> StoreResult<()> {
        let mut guard = self.state.lock().await;
        guard.clean_up()?;
        guard.commit_batch().await;
        run_blocking(&guard.conn, "PRAGMA wal_checkpoint(TRUNCATE)").await
    }

    /// Starts the committer task. It ends when the store is dropped.
    pub(crate) fn spawn_committer(&self) {
        let state = Arc::downgrade(&self.state);
        let dirty = self.dirty.clone();
        tokio::spawn(async move {
            loop {
                dirty.notified().await;
                let Some(state) = state.upgrade() else { return };
                let mut guard = state.lock().await;
                if let Err(e) = guard.clean_up() {
                    tracing::error!(error = %e, "could not undo an abandoned savepoint");
                }
                guard.commit_batch().await;
            }
        });
    }
}

/// Runs `migrator` on a fresh sqlx connection to the SQLite file at `path`, creating it.
pub(crate) async fn migrate_sqlite(path: &std::path::Path, migrator: &sqlx::migrate::Migrator) -> StoreResult<()> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
    sqlx::raw_sql("PRAGMA busy_timeout = 10000").execute(&mut conn).await?;
    migrator.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

enum TxConn {
    Sqlite(OwnedMutexGuard<WriterState>),
    /// `None` once committed or rolled back.
    Postgres(Option<Transaction<'static, Any>>),
}

/// A write transaction. Commit with [`Tx::commit`]; dropping it without commit undoes its
/// writes.
pub struct Tx {
    conn: TxConn,
    store: Store,
    scheduled_message: bool,
    /// Ids (of orders, and of the payments and refunds whose order is held) whose order
    /// row this transaction holds already: holding it again would be a round trip for
    /// nothing (see `Tx::hold_order`).
    pub(crate) held: Vec<String>,
    /// Messages scheduled and not yet written (see `Tx::schedule`).
    pub(crate) unwritten: Vec<crate::scheduling::Unwritten>,
    /// Events appended and not yet written (see `Tx::insert_event`).
    pub(crate) unwritten_events: Vec<crate::events::UnwrittenEvent>,
    /// `(kind, key)` of messages cancelled whose rows are not deleted yet (see
    /// `Tx::cancel_messages_of`).
    pub(crate) uncancelled: Vec<(String, String)>,
}

impl Tx {
    pub(crate) async fn begin(store: Store) -> StoreResult<Tx> {
        let started = Tx::open(&store).await;
        if started.is_err() {
            store.note_write(&started);
        }
        Ok(Tx {
            conn: started?,
            store,
            scheduled_message: false,
            held: Vec::new(),
            unwritten: Vec::new(),
            unwritten_events: Vec::new(),
            uncancelled: Vec::new(),
        })
    }

    async fn open(store: &Store) -> StoreResult<TxConn> {
        Ok(match store.writer() {
            Writer::Sqlite(group) => {
                let asked = std::time::Instant::now();
                let mut guard = group.state.clone().lock_owned().await;
                metrics::histogram!("payq_store_writer_wait_seconds").record(asked.elapsed().as_secs_f64());
                guard.batch_size += 1;
                guard.clean_up()?;
                if guard.batch.is_none() {
                    run(&guard.conn, "BEGIN IMMEDIATE")?;
                    guard.batch = Some(watch::channel(None).0);
                }
                run(&guard.conn, "SAVEPOINT tx")?;
                guard.dangling_savepoint = true;
                TxConn::Sqlite(guard)
            }
            Writer::Postgres(pool) => TxConn::Postgres(Some(begin_retrying_once(pool).await?)),
        })
    }

    /// The connection, for the repository methods of this crate.
    pub(crate) fn conn(&mut self) -> Executor<'_> {
        match &mut self.conn {
            TxConn::Sqlite(guard) => Executor::SqliteWriter(&guard.conn),
            TxConn::Postgres(Some(tx)) => Executor::Postgres(&mut *tx),
            // Commit and rollback consume the `Tx`, so no method runs after them.
            TxConn::Postgres(None) => unreachable!("transaction used after it ended"),
        }
    }

    /// The process this transaction's claims name as their owner.
    pub(crate) fn process_id(&self) -> &crate::ProcessId {
        self.store.process_id()
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
        self.write_scheduled().await?;
        let store = self.store.clone();
        let scheduled_message = self.scheduled_message;
        match &mut self.conn {
            TxConn::Sqlite(guard) => {
                run(&guard.conn, "RELEASE tx")?;
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
                crate::db::pg_round_trips(1);
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
        self.write_scheduled().await?;
        match &mut self.conn {
            // Later writers see it at once, other connections once the batch commits (which
            // the committer does right away).
            TxConn::Sqlite(guard) => {
                run(&guard.conn, "RELEASE tx")?;
                guard.dangling_savepoint = false;
            }
            TxConn::Postgres(tx) => {
                if let Some(mut tx) = tx.take() {
                    crate::db::pg_round_trips(2);
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
            TxConn::Sqlite(guard) => guard.clean_up(),
            TxConn::Postgres(tx) => match tx.take() {
                Some(tx) => {
                    crate::db::pg_round_trips(1);
                    Ok(tx.rollback().await?)
                }
                None => Ok(()),
            },
        }
    }
}

/// Starts a PostgreSQL transaction, once more on a fresh connection if the first one was
/// found dead (a restarted server or a terminated backend): nothing has run yet, so the
/// retry is safe.
async fn begin_retrying_once(pool: &AnyPool) -> StoreResult<Transaction<'static, Any>> {
    crate::db::pg_round_trips(1);
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
