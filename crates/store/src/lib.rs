//! payq's SQL store. All SQL lives in this crate: HTTP handlers and workers call typed
//! methods and never write a query.
//!
//! Reads go through a pool of read connections; writes go through a [`Tx`] on the single
//! writer connection. Commits are grouped: each `Tx` is a savepoint inside a batch
//! transaction that a committer task commits as soon as the writer is free, so many requests
//! share one fsync and every `commit()` returns only once its batch is durable.

mod background;
mod channel_calls;
mod console;
mod db;
mod dead_letters;
mod dialect;
mod error;
mod events;
mod idempotency;
mod inventory;
pub mod job_kinds;
mod lane;
mod lifeline;
mod merchants;
mod messages;
mod orders;
mod outbox;
mod payment_start;
mod pending;
mod pg_hosts;
mod primary;
mod reconciliation;
mod reconciliation_records;
mod refunds;
mod rows;
mod scheduling;
mod sim_ledger;
mod sql;
mod verify;
mod webhooks;
mod writer;

pub use channel_calls::{CallClaim, ChannelCall};
pub use console::{MinuteCounts, OrderHistory, OrderSearch, TimelineEvent};
pub use dead_letters::DeadLetter;
pub use dialect::Backend;
pub use error::StoreError;
pub use events::{Announcement, DeliveryContext, EventBody, NewEvent};
pub use idempotency::{IdempotencyBegin, StoredResponse};
pub use inventory::Shortage;
pub use job_kinds::JOB_KINDS_IN_SQL;
pub use lane::Lane;
pub use lifeline::ProcessId;
pub use merchants::{MerchantCredentials, NewMerchant, PreviousSecret};
pub use messages::{ClaimedMessage, NewMessage};
pub use orders::{NewOrder, NewPayment, OrderPage, PaymentRecord};
pub use outbox::OutboxMessage;
pub use payment_start::PaymentStart;
pub use pending::{MessageStats, PendingMessage};
pub use reconciliation::{NewDiscrepancy, RunFilter, RunResult};
pub use reconciliation_records::{Recorded, Succeeded};
pub use sim_ledger::{SimStatus, SimTxn};
pub use verify::Violation;
pub use webhooks::WebhookDelivery;
pub use writer::Tx;

use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Statements each PostgreSQL connection keeps prepared, unless the URL names its own
/// `statement-cache-capacity`: more than all of payq's statements, so that none is parsed
/// and planned again because others pushed it out (sqlx keeps 100 by default, fewer than a
/// process that serves the API, relays and runs workers uses).
const PG_STATEMENT_CACHE: usize = 1024;

/// `url` with payq's statement cache size, unless it sets one.
fn with_statement_cache(url: &str) -> String {
    if url.contains("statement-cache-capacity=") {
        return url.to_owned();
    }
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}statement-cache-capacity={PG_STATEMENT_CACHE}")
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    read: Reads,
    writer: writer::Writer,
    /// Woken when a message is scheduled, so the dispatcher can re-plan its sleep.
    messages_changed: [Notify; 2],
    /// Every event is announced (published on the broker), not only those for webhooks.
    announce_all_events: std::sync::atomic::AtomicBool,
    /// The last write failed because the storage was unavailable (cleared by the next
    /// write that commits), so readiness reports a full disk even while reads work.
    write_failing: std::sync::atomic::AtomicBool,
    /// This process, as the owner of the messages it claims.
    process: lifeline::ProcessId,
    /// PostgreSQL: messages were committed; the announcer sends one `NOTIFY` for any
    /// number of them.
    announce: Arc<Notify>,
    /// PostgreSQL: the servers named and the one written to (`None` on SQLite).
    primary: Option<Arc<primary::Primary>>,
}

/// Where reads run: SQLite's read connections, or the PostgreSQL pool.
enum Reads {
    Sqlite(db::Readers),
    Postgres(AnyPool),
}

impl Inner {
    /// Wakes every lane's dispatcher (and the relay).
    fn wake_all(&self) {
        for waiter in &self.messages_changed {
            waiter.notify_one();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs pending migrations.
    ///
    /// `url` is `sqlite://path/to/file.db` (the parent directory is created) or
    /// `postgres://user@host/database`.
    pub async fn open(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Store::open_sqlite(url).await,
            Some(Backend::Postgres) => Store::open_postgres(url).await,
            None => Err(StoreError::UnsupportedUrl(url.to_owned())),
        }
    }

    async fn open_sqlite(url: &str) -> StoreResult<Store> {
        let path = sqlite_file(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
        let path = std::path::absolute(path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        create_private(&path)?;
        // Migrations first, on a connection of their own (they are recorded the way sqlx
        // records them, so a database created by an older payq upgrades in place).
        writer::migrate_sqlite(&path, &sqlx::migrate!("./migrations/sqlite")).await?;
        let writer = db::open_sqlite(&path, false)?;
        // WAL lets readers run beside the writer. FULL: a commit is on disk when commit()
        // returns; grouping keeps it fast. Checkpoints copy the WAL back into the database
        // file and fsync it; left to SQLite they run inside whichever commit crosses the
        // threshold, on the writer's critical path, so a separate connection runs them in
        // the background instead.
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;")?;
        let checkpointer = db::open_sqlite(&path, false)?;
        let group = writer::GroupCommit::new(writer, path.clone());
        group.spawn_committer();
        let store = Store {
            inner: Arc::new(Inner {
                backend: Backend::Sqlite,
                read: Reads::Sqlite(db::Readers::new(path)),
                writer: writer::Writer::Sqlite(group),
                messages_changed: [Notify::new(), Notify::new()],
                announce_all_events: std::sync::atomic::AtomicBool::new(false),
                write_failing: std::sync::atomic::AtomicBool::new(false),
                process: lifeline::ProcessId::generate(),
                announce: Arc::new(Notify::new()),
                primary: None,
            }),
        };
        background::spawn_checkpointer(Arc::downgrade(&store.inner), checkpointer);
        Ok(store)
    }

    async fn open_postgres(url: &str) -> StoreResult<Store> {
        let urls = pg_hosts::server_urls(url)?.iter().map(|server| with_statement_cache(server)).collect();
        let primary = primary::Primary::new(urls);
        if primary.several() {
            let first = primary.find_writable().await;
            let index = first.ok_or_else(|| StoreError::Unavailable("no server named takes writes".into()))?;
            primary.point_at(index);
        }
        let pool = primary
            .pool_options()
            .max_connections(16)
            // With a standby to move to, a request waits less for a connection to a server
            // that is gone, so that it is answered within SPEC §8's 10 s.
            .acquire_timeout(Duration::from_secs(if primary.several() { 5 } else { 10 }))
            .connect(primary.url())
            .await?;
        // The migrator holds an advisory lock, so processes starting together take turns.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Store {
            inner: Arc::new(Inner {
                backend: Backend::Postgres,
                read: Reads::Postgres(pool.clone()),
                writer: writer::Writer::Postgres(pool.clone()),
                messages_changed: [Notify::new(), Notify::new()],
                announce_all_events: std::sync::atomic::AtomicBool::new(false),
                write_failing: std::sync::atomic::AtomicBool::new(false),
                process: lifeline::ProcessId::generate(),
                announce: Arc::new(Notify::new()),
                primary: Some(primary.clone()),
            }),
        };
        background::spawn_listener(Arc::downgrade(&store.inner), primary.clone());
        background::spawn_announcer(Arc::downgrade(&store.inner), store.inner.announce.clone(), pool.clone());
        primary::spawn_follower(Arc::downgrade(&store.inner), primary, pool);
        Ok(store)
    }

    /// Copies the whole WAL into the database file and truncates it (after a bulk load).
    /// Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> StoreResult<()> {
        match self.writer() {
            writer::Writer::Sqlite(group) => group.checkpoint().await,
            writer::Writer::Postgres(_) => Ok(()),
        }
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self.writer() {
            writer::Writer::Sqlite(group) => group.migrate(&sqlx::migrate!("./migrations/sqlite")).await,
            writer::Writer::Postgres(pool) => Ok(sqlx::migrate!("./migrations/postgres").run(pool).await?),
        }
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Tx::begin(self.clone()).await
    }

    /// Where reads of committed data run.
    pub(crate) fn read(&self) -> db::Executor<'_> {
        match &self.inner.read {
            Reads::Sqlite(readers) => db::Executor::SqliteReaders(readers),
            Reads::Postgres(pool) => db::Executor::PostgresPool(pool, self.inner.primary.as_deref()),
        }
    }

    pub(crate) fn writer(&self) -> &writer::Writer {
        &self.inner.writer
    }

    /// Resolves when a message was scheduled since the last call (or immediately if a
    /// wake-up is already pending).
    /// Each lane's dispatcher waits on its own wake-up (a wake-up taken by one lane's
    /// dispatcher must not be lost to the other); the outbox relay waits on the work lane's.
    pub async fn messages_changed(&self, lane: Lane) {
        self.inner.messages_changed[lane.index()].notified().await;
    }

    /// Makes every event announced (the distributed mode, where other systems subscribe to
    /// `payq.events`), not only the events of merchants with a webhook.
    pub fn announce_all_events(&self) {
        self.inner.announce_all_events.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether every event is announced.
    pub fn announces_all_events(&self) -> bool {
        self.inner.announce_all_events.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the other processes (PostgreSQL `NOTIFY`) that messages were committed.
    pub(crate) fn announce_messages(&self) {
        self.inner.announce.notify_one();
    }

    pub(crate) fn notify_messages_changed(&self) {
        self.inner.wake_all();
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        db::query("SELECT 1").execute(self.read()).await.is_ok()
    }

    /// Whether the store can serve requests: the database answers and the last write did
    /// not fail for lack of storage (a full disk leaves reads working).
    pub async fn is_ready(&self) -> bool {
        !self.inner.write_failing.load(std::sync::atomic::Ordering::Relaxed) && self.ping().await
    }

    /// Runs one writing statement as a transaction of its own and returns the row it
    /// returns, if any: on SQLite through the writer (and its group commit), on PostgreSQL
    /// as one autocommitted statement, without the two round trips of `BEGIN` and `COMMIT`.
    pub(crate) async fn write_one(&self, q: db::Query<'_>) -> StoreResult<Option<db::Row>> {
        if self.backend().one_writer() {
            let mut tx = self.begin().await?;
            let row = q.fetch_optional(tx.conn()).await?;
            tx.commit().await?;
            Ok(row)
        } else {
            let outcome = q.fetch_optional(self.read()).await;
            self.note_write(&outcome);
            outcome
        }
    }

    /// Records the outcome of a write for [`Store::is_ready`].
    pub(crate) fn note_write<T>(&self, outcome: &StoreResult<T>) {
        let failing = matches!(outcome, Err(e) if e.is_unavailable());
        if let Some(primary) = self.inner.primary.as_ref().filter(|_| failing) {
            primary.report_unavailable();
        }
        if outcome.is_ok() || failing {
            self.inner.write_failing.store(failing, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// This process's identity as the owner of claimed messages.
    pub fn process_id(&self) -> &ProcessId {
        &self.inner.process
    }
}

/// The file a `sqlite://path` (or `sqlite:path`) URL names; `None` for other URLs.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(std::path::PathBuf::from(path))
}

/// Creates the database file readable and writable by its owner only (0600) if it does not
/// exist yet; SQLite gives its `-wal` and `-shm` files the same mode.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `url` with its password (if any) replaced by `***`, for logs, errors and start-up
/// lines: `postgres://payq:***@db/payq`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    payq_domain::Timestamp::now().millis()
}

#[cfg(test)]
mod tests {
    use super::{redact_url, with_statement_cache};

    #[test]
    fn postgres_urls_get_a_statement_cache_unless_they_name_one() {
        assert_eq!(with_statement_cache("postgres://h/d"), "postgres://h/d?statement-cache-capacity=1024");
        assert_eq!(
            with_statement_cache("postgres://h/d?sslmode=disable"),
            "postgres://h/d?sslmode=disable&statement-cache-capacity=1024"
        );
        let own = "postgres://h/d?statement-cache-capacity=50";
        assert_eq!(with_statement_cache(own), own);
    }

    #[test]
    fn passwords_never_show_in_printed_urls() {
        assert_eq!(redact_url("postgres://payq:s3cret@db:5432/payq"), "postgres://payq:***@db:5432/payq");
        assert_eq!(redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
        assert_eq!(redact_url("sqlite://payq-data/payq.db"), "sqlite://payq-data/payq.db");
        assert_eq!(redact_url("postgres://u:p%40ss@h/d?sslmode=require"), "postgres://u:***@h/d?sslmode=require");
    }
}
