//! The store's one error type, and how a database failure is classified: a missing row,
//! a lost race, a database that cannot take writes now, or something broken.

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
    #[error("unsupported database URL {0:?}: use sqlite://path or postgres://…")]
    UnsupportedUrl(String),
    /// The URL asks for a server that does not take writes (`target_session_attrs`).
    #[error("target_session_attrs={0} names a server payq cannot write to: use read-write")]
    UnwritableSessionAttrs(String),
    /// The batch this write belonged to failed to commit.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The database cannot take the request now (disk full, I/O error, connection lost or
    /// refused, pool exhausted); it may succeed once the fault clears.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(sqlx::Error),
    /// A SQLite statement failed for a reason other than the ones above.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    /// Sorts database errors by what the caller can do about them: a fault of the storage
    /// itself becomes [`StoreError::Unavailable`] (answered 503, retried by workers), a lost
    /// race [`StoreError::Conflict`]; anything else stays a plain database error.
    fn from(e: sqlx::Error) -> StoreError {
        if storage_fault(&e) {
            return StoreError::Unavailable(e.to_string());
        }
        if let sqlx::Error::Database(db) = &e {
            // PostgreSQL: serialization failure, deadlock. SQLite: busy past the timeout.
            if db.is_unique_violation() || matches!(db.code().as_deref(), Some("40001" | "40P01" | "5" | "6")) {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::Db(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    /// Sorts SQLite errors the same way: storage faults are [`StoreError::Unavailable`];
    /// a busy database or a duplicate key is a [`StoreError::Conflict`].
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ffi;
        if let rusqlite::Error::SqliteFailure(failure, _) = &e {
            return match failure.code {
                ffi::ErrorCode::SystemIoFailure | ffi::ErrorCode::DiskFull | ffi::ErrorCode::CannotOpen => {
                    StoreError::Unavailable(e.to_string())
                }
                ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => StoreError::Conflict(e.to_string()),
                ffi::ErrorCode::ConstraintViolation
                    if matches!(
                        failure.extended_code,
                        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    ) =>
                {
                    StoreError::Conflict(e.to_string())
                }
                _ => StoreError::Sqlite(e),
            };
        }
        StoreError::Sqlite(e)
    }
}

/// Whether `e` says the storage cannot serve at the moment rather than that the statement
/// was wrong: lost or refused connections, an exhausted pool, a full disk, I/O errors.
fn storage_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // SQLite primary result codes (extended codes keep them in the low byte):
            // SQLITE_IOERR 10, SQLITE_CORRUPT 11, SQLITE_FULL 13, SQLITE_CANTOPEN 14.
            Some(code) if code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 10 | 13 | 14)) => true,
            // PostgreSQL classes 08 (connection), 53 (insufficient resources: disk full,
            // out of memory, too many connections), 57P (operator intervention: shutdown),
            // and 25006 (a read-only server: a standby, or a primary demoted by a failover).
            Some(code) => {
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "25006"
            }
            None => false,
        },
        _ => false,
    }
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Db(_)
                | StoreError::Sqlite(_)
                | StoreError::CommitFailed(_)
                | StoreError::Io(_)
                | StoreError::Conflict(_)
                | StoreError::Unavailable(_)
        )
    }

    /// Whether the storage itself is failing (the request may be retried once it recovers).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
