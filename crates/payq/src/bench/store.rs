//! The `store` delay engine on SQLite under the bench scenarios.

use super::TimersArgs;
use super::batched::{self, InsertBatch};
use super::stats::{Fired, Report, rate};
use payq_bus::{ClaimedMessage, EngineConfig, Handled, Handler, HandlerError, StoreEngine};
use payq_domain::Timestamp;
use payq_store::{NewMessage, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The store engine on SQLite (the embedded mode).
pub const ON_SQLITE: &str = "store (SQLite)";
/// The store engine on PostgreSQL (the distributed mode's `store` engine).
pub const ON_POSTGRES: &str = "store (PostgreSQL)";

/// The handler under test: records each timer as it fires.
#[derive(Default)]
struct Recorder(Fired);

impl Handler for Recorder {
    async fn handle(&self, msg: &ClaimedMessage) -> Result<Handled, HandlerError> {
        self.0.record([msg.scheduled_at.millis()]);
        Ok(Handled::Done)
    }
}

fn timer(due: Timestamp) -> NewMessage {
    NewMessage {
        kind: "bench.timer".into(),
        key: None,
        lane: payq_store::Lane::Work,
        ordinal: None,
        payload: serde_json::Value::Null,
        due_at: due,
    }
}

/// Writes each batch of timers in a transaction of its own, as concurrent requests would.
#[derive(Clone)]
struct Scheduler(Store);

impl InsertBatch for Scheduler {
    async fn insert(&self, dues: Vec<i64>) -> anyhow::Result<()> {
        let mut tx = self.0.begin().await?;
        tx.schedule_many(dues.into_iter().map(|d| timer(Timestamp::from_millis(d))).collect()).await?;
        tx.commit().await?;
        Ok(())
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(store: &Store, recorder: &Arc<Recorder>) -> Running {
    let config = EngineConfig { batch: 4_000, concurrency: 16_000, ..EngineConfig::default() };
    let engine = StoreEngine::new(store.clone(), recorder.clone(), config);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { engine.run(token).await });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs every scenario on a fresh SQLite file.
pub async fn run(args: &TimersArgs) -> anyhow::Result<Vec<Report>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await?;
    run_on(args, store, ON_SQLITE, Some(&path)).await
}

/// Runs the mixed, drain and steady scenarios on a fresh PostgreSQL database (created on
/// the server of `args.pg_url`, dropped afterwards).
pub async fn run_postgres(args: &TimersArgs) -> anyhow::Result<Vec<Report>> {
    use sqlx::Connection;
    let Ok(mut admin) = sqlx::PgConnection::connect(&args.pg_url).await else {
        println!("{ON_POSTGRES}: skipped, PostgreSQL at {} unreachable", args.pg_url);
        return Ok(Vec::new());
    };
    let name = format!("payq_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    let base = args.pg_url.rsplit_once('/').map_or(args.pg_url.as_str(), |(b, _)| b);
    let store = Store::open(&format!("{base}/{name}")).await?;
    let result = run_on(args, store, ON_POSTGRES, None).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    result
}

/// The scenarios on `store`; the capacity one only where `path` (a SQLite file) is given.
async fn run_on(
    args: &TimersArgs,
    store: Store,
    engine_name: &'static str,
    path: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Report>> {
    let recorder = Arc::new(Recorder::default());
    let engine = start(&store, &recorder);
    let mut out = batched::scenarios(args, engine_name, &Scheduler(store.clone()), &recorder.0).await?;
    engine.stop().await;
    if args.pending > 0
        && let Some(path) = path
    {
        out.push(capacity(&store, &recorder, args, path).await?);
    }
    Ok(out)
}

/// Holds `args.pending` timers due in a day, then fires a steady stream of near timers
/// among them.
async fn capacity(
    store: &Store,
    recorder: &Arc<Recorder>,
    args: &TimersArgs,
    path: &std::path::Path,
) -> anyhow::Result<Report> {
    let p = args.pending;
    eprintln!("{ON_SQLITE}: capacity: scheduling {p} timers due tomorrow, then firing timers among them…");
    let rss_before = super::rss_bytes();
    let far = Timestamp::now().plus_millis(86_400_000);
    let took = batched::schedule(&Scheduler(store.clone()), p, |i, _| {
        far.plus_millis(i64::try_from(i % 3_600_000).unwrap_or(0))
    })
    .await?;
    let rss_after = super::rss_bytes();
    // Measure the steady state, not the write-back of the bulk load.
    let checkpoint = Instant::now();
    store.checkpoint().await?;
    println!("{ON_SQLITE}: checkpointed the load in {:.1?}", checkpoint.elapsed());
    let disk = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum::<u64>();
    println!("{ON_SQLITE}: {p} pending timers scheduled in {took:.1?}");
    let engine = start(store, recorder);
    let mut report = batched::steady(
        &Scheduler(store.clone()),
        ON_SQLITE,
        &recorder.0,
        args.rate.min(10_000),
        Duration::from_secs(5),
        1_000,
    )
    .await?;
    engine.stop().await;
    let pending = store.message_stats(Timestamp::now()).await?.pending_total;
    report.scenario = "capacity";
    report.notes = vec![
        format!("{pending} pending"),
        format!(
            "process RSS {:.0} MB (+{:.0} B/pending)",
            rss_after as f64 / 1e6,
            rss_after.saturating_sub(rss_before) as f64 / p as f64
        ),
        format!("disk {:.0} B/pending", disk as f64 / p as f64),
        format!("scheduled at {:.0}/s", rate(p, took)),
    ];
    Ok(report)
}
