//! The PostgreSQL `SKIP LOCKED` poller peer: the delay queue teams write on a SQL table.
//! Producers insert rows with a due time; pollers repeatedly take due rows with
//! `SELECT … FOR UPDATE SKIP LOCKED`, handle them and delete them in the same transaction,
//! and sleep 10 ms when nothing is due. Commits are durable (`synchronous_commit = on`).

use super::TimersArgs;
use super::batched::{self, InsertBatch};
use super::stats::{Fired, Report};
use payq_domain::Timestamp;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ENGINE: &str = "PostgreSQL SKIP LOCKED poller";
const POLLERS: usize = 2;
const BATCH: i64 = 1_000;

async fn poll(pool: PgPool, table: String, fired: Arc<Fired>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let select =
        format!("SELECT id, due_at FROM {table} WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED");
    let delete = format!("DELETE FROM {table} WHERE id = ANY($1)");
    while !stop.load(Ordering::SeqCst) {
        let mut tx = pool.begin().await?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(select.as_str()))
            .bind(Timestamp::now().millis())
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        sqlx::query(sqlx::AssertSqlSafe(delete.as_str())).bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        fired.record(rows.iter().map(|(_, due)| *due));
    }
    Ok(())
}

/// Inserts batches of due times into the peer's table.
#[derive(Clone)]
struct Inserter {
    pool: PgPool,
    insert: Arc<str>,
}

impl InsertBatch for Inserter {
    async fn insert(&self, dues: Vec<i64>) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(&*self.insert)).bind(&dues).execute(&self.pool).await?;
        Ok(())
    }
}

/// Runs the mixed, drain and steady scenarios; skipped if PostgreSQL does not answer.
pub async fn run(args: &TimersArgs) -> anyhow::Result<Vec<Report>> {
    let pool = match PgPoolOptions::new().max_connections(8).connect(&args.pg_url).await {
        Ok(p) => p,
        Err(e) => {
            println!("{ENGINE}: skipped, PostgreSQL at {} unreachable: {e}", args.pg_url);
            return Ok(Vec::new());
        }
    };
    let table = format!("payq_bench_timers_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, due_at BIGINT NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE INDEX ON {table} (due_at)"))).execute(&pool).await?;
    let fired = Arc::new(Fired::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> =
        (0..POLLERS).map(|_| tokio::spawn(poll(pool.clone(), table.clone(), fired.clone(), stop.clone()))).collect();
    let inserter = Inserter {
        pool: pool.clone(),
        insert: format!("INSERT INTO {table} (due_at) SELECT * FROM UNNEST($1::BIGINT[])").into(),
    };
    let result = batched::scenarios(args, ENGINE, &inserter, &fired).await;
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        let _ = p.await;
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&pool).await;
    result
}
