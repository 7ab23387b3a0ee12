//! The PostgreSQL `SKIP LOCKED` poller peer: the delay queue teams write on a SQL table.
//! Producers insert rows with a due time; pollers repeatedly take due rows with
//! `SELECT … FOR UPDATE SKIP LOCKED`, handle them and delete them in the same transaction,
//! and sleep 10 ms when nothing is due. Commits are durable (`synchronous_commit = on`).

use super::TimersArgs;
use super::stats::{Fired, Report, rate, spread};
use payq_domain::Timestamp;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ENGINE: &str = "PostgreSQL SKIP LOCKED poller";
const POLLERS: usize = 2;
const BATCH: i64 = 1_000;
const CHUNK: u64 = 2_000;

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

/// Inserts timers due at `due(i, now)` from 4 concurrent producers.
async fn schedule(
    pool: &PgPool,
    table: &str,
    n: u64,
    due: impl Fn(u64, Timestamp) -> Timestamp + Sync,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let insert = format!("INSERT INTO {table} (due_at) SELECT * FROM UNNEST($1::BIGINT[])");
    let producer = || async {
        loop {
            let i = next.fetch_add(CHUNK, Ordering::SeqCst);
            if i >= n {
                return anyhow::Ok(());
            }
            let now = Timestamp::now();
            let dues: Vec<i64> = (i..(i + CHUNK).min(n)).map(|i| due(i, now).millis()).collect();
            sqlx::query(sqlx::AssertSqlSafe(insert.as_str())).bind(&dues).execute(pool).await?;
        }
    };
    futures_util::future::try_join_all((0..4).map(|_| producer())).await?;
    Ok(started.elapsed())
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
    let result = scenarios(args, &pool, &table, &fired).await;
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        let _ = p.await;
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&pool).await;
    result
}

async fn scenarios(args: &TimersArgs, pool: &PgPool, table: &str, fired: &Fired) -> anyhow::Result<Vec<Report>> {
    let (n, max) = (args.burst, args.max_delay_ms());
    let mut out = Vec::new();

    let started = Instant::now();
    let took = schedule(pool, table, n, |i, now| now.plus_millis(spread(i, n, max))).await?;
    let all = fired.wait_for(n, Duration::from_millis(max) + Duration::from_secs(300)).await;
    let taken = fired.take();
    let (late, last) = (taken.late, taken.last);
    println!("{ENGINE}: mixed done (all fired: {all})");
    out.push(
        Report {
            engine: ENGINE,
            scenario: "mixed",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: last.map(|l| rate(n, l.duration_since(started))),
            lateness_ms: late,
            ..Default::default()
        }
        .finish(),
    );

    let due = Timestamp::now().plus_millis(5_000);
    let took = schedule(pool, table, n, |_, _| due).await?;
    let all = fired.wait_for(n, Duration::from_secs(300)).await;
    let taken = fired.take();
    let (late, span) = (taken.late, taken.span);
    println!("{ENGINE}: drain done (all fired: {all})");
    out.push(
        Report {
            engine: ENGINE,
            scenario: "drain",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: span.map(|s| rate(n, s)),
            lateness_ms: late,
            ..Default::default()
        }
        .finish(),
    );

    let tick = Duration::from_millis(10);
    let per_tick = (args.rate / 100).max(1);
    let ticks = (args.steady_duration().as_millis() / tick.as_millis()) as u64;
    let total = per_tick * ticks;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let insert = format!("INSERT INTO {table} (due_at) SELECT * FROM UNNEST($1::BIGINT[])");
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..ticks {
        interval.tick().await;
        let (pool, insert) = (pool.clone(), insert.clone());
        writers.spawn(async move {
            let now = Timestamp::now();
            let dues: Vec<i64> =
                (0..per_tick).map(|j| now.plus_millis(spread(t * per_tick + j, total, max)).millis()).collect();
            sqlx::query(sqlx::AssertSqlSafe(insert.as_str())).bind(&dues).execute(&pool).await.map(|_| ())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let took = started.elapsed();
    let all = fired.wait_for(total, Duration::from_millis(max) + Duration::from_secs(120)).await;
    let late = fired.take().late;
    println!("{ENGINE}: steady done");
    out.push(
        Report {
            engine: ENGINE,
            scenario: "steady",
            timers: total,
            scheduled_per_s: Some(rate(total, took)),
            lateness_ms: late,
            notes: vec![format!("target {}/s, all fired: {all}", args.rate)],
            ..Default::default()
        }
        .finish(),
    );
    Ok(out)
}
