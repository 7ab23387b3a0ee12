//! One way to run a statement on either backend, so the repositories of this crate hold one
//! copy of their SQL and their row reading.
//!
//! SQLite runs through `rusqlite`, in place on the calling thread: a statement over the
//! store's indexes takes microseconds, far less than handing it to another thread and back
//! (docs/benchmarks.md shows what that hand-off cost). Only the commit's fsync leaves the
//! async threads (see the writer). PostgreSQL runs through `sqlx`, whose statements are
//! network round trips anyway.
//!
//! Statements number their parameters `$1, $2, …` on both backends; a number may repeat.

use crate::{StoreError, StoreResult};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A value bound to a parameter or read from a SQLite column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    /// A boolean: a PostgreSQL `boolean`, SQLite's integer 0 or 1.
    Bool(bool),
    Real(f64),
    Text(String),
    /// SQL `NULL` where an integer goes (PostgreSQL types its parameters).
    NullInt,
    /// SQL `NULL` where text goes.
    NullText,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::NullInt | Value::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// What may be bound to a statement's parameter.
pub(crate) trait Bind {
    /// The `NULL` of this type, for `Option::None`.
    const NULL: Value;
    fn into_value(self) -> Value;
}

macro_rules! bind_int {
    ($($t:ty),*) => {$(
        impl Bind for $t {
            const NULL: Value = Value::NullInt;
            fn into_value(self) -> Value {
                Value::Int(i64::from(self))
            }
        }
    )*};
}
bind_int!(i64, i32, u32);

impl Bind for bool {
    const NULL: Value = Value::NullInt;
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl Bind for f64 {
    const NULL: Value = Value::NullInt;
    fn into_value(self) -> Value {
        Value::Real(self)
    }
}

impl Bind for String {
    const NULL: Value = Value::NullText;
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}

impl Bind for &str {
    const NULL: Value = Value::NullText;
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl Bind for &String {
    const NULL: Value = Value::NullText;
    fn into_value(self) -> Value {
        Value::Text(self.clone())
    }
}

impl<T: Bind> Bind for Option<T> {
    const NULL: Value = T::NULL;
    fn into_value(self) -> Value {
        match self {
            Some(v) => v.into_value(),
            None => T::NULL,
        }
    }
}

/// Why a SQLite value does not read as the column's type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("unexpected NULL")]
    Null,
    #[error("{0:?} is not an integer")]
    NotAnInteger(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0} is out of range")]
    OutOfRange(i64),
}

/// What may be read from a column, on either backend.
pub(crate) trait Decode: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    /// Reads a SQLite value, converting the way SQLite's own accessors do.
    fn from_value(value: &Value) -> Result<Self, DecodeError>;
}

impl Decode for i64 {
    fn from_value(value: &Value) -> Result<i64, DecodeError> {
        match value {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            // Float to integer, saturating: what SQLite's own integer accessor does.
            #[allow(clippy::cast_possible_truncation)]
            Value::Real(r) => Ok(*r as i64),
            Value::Text(s) => s.trim().parse().map_err(|_| DecodeError::NotAnInteger(s.clone())),
            Value::NullInt | Value::NullText => Err(DecodeError::Null),
        }
    }
}

impl Decode for i32 {
    fn from_value(value: &Value) -> Result<i32, DecodeError> {
        let wide = i64::from_value(value)?;
        i32::try_from(wide).map_err(|_| DecodeError::OutOfRange(wide))
    }
}

impl Decode for bool {
    fn from_value(value: &Value) -> Result<bool, DecodeError> {
        Ok(i64::from_value(value)? != 0)
    }
}

impl Decode for f64 {
    fn from_value(value: &Value) -> Result<f64, DecodeError> {
        match value {
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Ok(*i as f64),
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            Value::Real(r) => Ok(*r),
            Value::Text(s) => s.trim().parse().map_err(|_| DecodeError::NotANumber(s.clone())),
            Value::NullInt | Value::NullText => Err(DecodeError::Null),
        }
    }
}

impl Decode for String {
    fn from_value(value: &Value) -> Result<String, DecodeError> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Real(r) => Ok(r.to_string()),
            Value::NullInt | Value::NullText => Err(DecodeError::Null),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn from_value(value: &Value) -> Result<Option<T>, DecodeError> {
        match value {
            Value::NullInt | Value::NullText => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A row read by a statement.
pub(crate) enum Row {
    Sqlite { columns: Arc<[String]>, values: Vec<Value> },
    Postgres(AnyRow),
}

impl Row {
    /// The value of `column`; a missing column or a value of another type is an error.
    pub(crate) fn try_get<T: Decode>(&self, column: &str) -> StoreResult<T> {
        match self {
            Row::Sqlite { columns, values } => {
                let at = columns
                    .iter()
                    .position(|c| c == column)
                    .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?}")))?;
                T::from_value(&values[at]).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            }
            Row::Postgres(row) => Ok(sqlx::Row::try_get(row, column)?),
        }
    }

    /// The value of the first column.
    fn first<T: Decode>(&self) -> StoreResult<T> {
        match self {
            Row::Sqlite { values, .. } => {
                let value = values.first().ok_or_else(|| StoreError::Corrupt("statement returned no column".into()))?;
                T::from_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            Row::Postgres(row) => Ok(sqlx::Row::try_get(row, 0)?),
        }
    }
}

/// What a statement without rows did.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    /// How many rows the statement inserted, updated or deleted.
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// Where a statement runs.
pub(crate) enum Executor<'e> {
    /// The SQLite writer connection, inside a transaction.
    SqliteWriter(&'e Mutex<rusqlite::Connection>),
    /// Any of the SQLite read connections: committed data only.
    SqliteReaders(&'e Readers),
    /// A PostgreSQL connection (a transaction's).
    Postgres(&'e mut AnyConnection),
    /// Any connection of the PostgreSQL pool, and the failover follower to tell when the
    /// server is gone (a process that only reads must find the new primary too).
    PostgresPool(&'e AnyPool, Option<&'e crate::primary::Primary>),
}

/// A pool statement's outcome. A failure that says the server is gone is also told to the
/// failover follower (docs/operations.md, "Clustered services").
fn reported<T>(primary: Option<&crate::primary::Primary>, outcome: Result<T, sqlx::Error>) -> StoreResult<T> {
    outcome.map_err(|e| {
        let e = StoreError::from(e);
        if let Some(primary) = primary.filter(|_| e.is_unavailable()) {
            primary.report_unavailable();
        }
        e
    })
}

/// A statement with its bound values.
#[must_use = "a query does nothing until it is executed or fetched"]
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

/// A statement with its bound values.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

/// A statement whose rows each hold one value of type `T`.
pub(crate) fn query_scalar<T: Decode>(sql: &str) -> Scalar<'_, T> {
    Scalar { query: query(sql), _type: std::marker::PhantomData }
}

impl<'q> Query<'q> {
    /// Binds the next parameter (`$1` first).
    pub(crate) fn bind(mut self, value: impl Bind) -> Query<'q> {
        self.args.push(value.into_value());
        self
    }

    /// Runs a statement, for what it changes.
    pub(crate) async fn execute(self, on: Executor<'_>) -> StoreResult<Done> {
        let rows_affected = match on {
            Executor::SqliteWriter(conn) => sqlite_execute(&lock(conn), self.sql, &self.args)?,
            Executor::SqliteReaders(readers) => readers.with(|conn| sqlite_execute(conn, self.sql, &self.args))?,
            Executor::Postgres(conn) => self.into_sqlx().execute(conn).await?.rows_affected(),
            Executor::PostgresPool(pool, primary) => {
                reported(primary, self.into_sqlx().execute(pool).await)?.rows_affected()
            }
        };
        Ok(Done { rows_affected })
    }

    /// Runs a statement and reads every row it returns.
    pub(crate) async fn fetch_all(self, on: Executor<'_>) -> StoreResult<Vec<Row>> {
        Ok(match on {
            Executor::SqliteWriter(conn) => sqlite_fetch(&lock(conn), self.sql, &self.args, usize::MAX)?,
            Executor::SqliteReaders(readers) => {
                readers.with(|conn| sqlite_fetch(conn, self.sql, &self.args, usize::MAX))?
            }
            Executor::Postgres(conn) => {
                self.into_sqlx().fetch_all(conn).await?.into_iter().map(Row::Postgres).collect()
            }
            Executor::PostgresPool(pool, primary) => {
                reported(primary, self.into_sqlx().fetch_all(pool).await)?.into_iter().map(Row::Postgres).collect()
            }
        })
    }

    /// Runs a statement and reads its first row, if any.
    pub(crate) async fn fetch_optional(self, on: Executor<'_>) -> StoreResult<Option<Row>> {
        Ok(match on {
            Executor::SqliteWriter(conn) => sqlite_fetch(&lock(conn), self.sql, &self.args, 1)?.pop(),
            Executor::SqliteReaders(readers) => readers.with(|conn| sqlite_fetch(conn, self.sql, &self.args, 1))?.pop(),
            Executor::Postgres(conn) => self.into_sqlx().fetch_optional(conn).await?.map(Row::Postgres),
            Executor::PostgresPool(pool, primary) => {
                reported(primary, self.into_sqlx().fetch_optional(pool).await)?.map(Row::Postgres)
            }
        })
    }

    /// Runs a statement and reads its first row, which must exist.
    pub(crate) async fn fetch_one(self, on: Executor<'_>) -> StoreResult<Row> {
        self.fetch_optional(on).await?.ok_or(StoreError::NotFound)
    }

    fn into_sqlx(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        pg_round_trips(1);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for value in self.args {
            q = match value {
                Value::Int(i) => q.bind(i),
                Value::Bool(b) => q.bind(b),
                Value::Real(r) => q.bind(r),
                Value::Text(s) => q.bind(s),
                Value::NullInt => q.bind(None::<i64>),
                Value::NullText => q.bind(None::<String>),
            };
        }
        q
    }
}

/// A [`Query`] read one value per row.
#[must_use = "a query does nothing until it is fetched"]
pub(crate) struct Scalar<'q, T> {
    query: Query<'q>,
    _type: std::marker::PhantomData<T>,
}

impl<'q, T: Decode> Scalar<'q, T> {
    /// Binds the next parameter (`$1` first).
    pub(crate) fn bind(mut self, value: impl Bind) -> Scalar<'q, T> {
        self.query = self.query.bind(value);
        self
    }

    /// The first column of every row.
    pub(crate) async fn fetch_all(self, on: Executor<'_>) -> StoreResult<Vec<T>> {
        self.query.fetch_all(on).await?.iter().map(Row::first).collect()
    }

    /// The first column of the first row, if any.
    pub(crate) async fn fetch_optional(self, on: Executor<'_>) -> StoreResult<Option<T>> {
        self.query.fetch_optional(on).await?.as_ref().map(Row::first).transpose()
    }

    /// The first column of the first row, which must exist.
    pub(crate) async fn fetch_one(self, on: Executor<'_>) -> StoreResult<T> {
        self.query.fetch_one(on).await?.first()
    }
}

/// Locks a SQLite connection. A panic while it was held cannot leave it half-used (every
/// statement resets on drop), so a poisoned lock is simply taken over.
pub(crate) fn lock(conn: &Mutex<rusqlite::Connection>) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prepares (from the connection's cache) and binds `$1…$n`.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Value],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut name = String::with_capacity(4);
    for (i, value) in args.iter().enumerate() {
        name.clear();
        name.push('$');
        name.push_str(&(i + 1).to_string());
        if let Some(index) = stmt.parameter_index(&name)? {
            stmt.raw_bind_parameter(index, value)?;
        }
    }
    Ok(stmt)
}

fn sqlite_execute(conn: &rusqlite::Connection, sql: &str, args: &[Value]) -> rusqlite::Result<u64> {
    let mut stmt = prepare(conn, sql, args)?;
    if stmt.column_count() == 0 {
        return Ok(stmt.raw_execute()? as u64);
    }
    // A statement with `RETURNING` or a PRAGMA: step through its rows.
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

fn sqlite_fetch(conn: &rusqlite::Connection, sql: &str, args: &[Value], limit: usize) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = prepare(conn, sql, args)?;
    let columns: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let width = columns.len();
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::NullText,
                rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                rusqlite::types::ValueRef::Real(r) => Value::Real(r),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(Row::Sqlite { columns: columns.clone(), values });
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Settings of every SQLite connection: the queue's hot pages stay in SQLite's own cache
/// instead of costing a read syscall each (the default cache is 2 MB).
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;
     PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456; PRAGMA temp_store = memory;
     PRAGMA synchronous = FULL;";

/// How many statements each SQLite connection keeps prepared.
const STATEMENT_CACHE: usize = 256;

/// Opens a SQLite connection to `path` with payq's settings.
pub(crate) fn open_sqlite(path: &std::path::Path, read_only: bool) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let access = if read_only { OpenFlags::SQLITE_OPEN_READ_ONLY } else { OpenFlags::SQLITE_OPEN_READ_WRITE };
    let conn = rusqlite::Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.execute_batch(SQLITE_PRAGMAS)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The SQLite read connections: each statement takes an idle one (or opens one) and gives
/// it back. Readers see committed data only and never wait for the writer (WAL).
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read connections kept open; more are opened while more statements run at once.
const IDLE_READERS: usize = 8;

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Readers {
        Readers { path, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on an idle read connection.
    fn with<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>) -> StoreResult<R> {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_sqlite(&self.path, true)?,
        };
        let outcome = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        Ok(outcome?)
    }
}

/// Counts `n` round trips to PostgreSQL (a statement, `BEGIN`, `COMMIT`): the
/// `payq_store_pg_round_trips_total` counter the cost-per-order benchmark reads
/// (docs/benchmarks.md).
pub(crate) fn pg_round_trips(n: u64) {
    metrics::counter!("payq_store_pg_round_trips_total").increment(n);
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
