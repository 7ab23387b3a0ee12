//! The `store` delay engine on SQLite under the bench scenarios.

use super::TimersArgs;
use super::stats::{Fired, Report, rate, spread};
use payq_bus::{ClaimedMessage, EngineConfig, Handler, HandlerError, StoreEngine};
use payq_domain::Timestamp;
use payq_store::{NewMessage, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The store engine on SQLite (the embedded mode).
pub const ON_SQLITE: &str = "store (SQLite)";
/// The store engine on PostgreSQL (the distributed mode's `store` engine).
pub const ON_POSTGRES: &str = "store (PostgreSQL)";
/// Timers written per transaction when scheduling in bulk.
const CHUNK: usize = 2_000;

/// The handler under test: records each timer as it fires.
#[derive(Default)]
struct Recorder(Fired);

impl Handler for Recorder {
    async fn handle(&self, msg: &ClaimedMessage) -> Result<(), HandlerError> {
        self.0.record([msg.scheduled_at.millis()]);
        Ok(())
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

/// Schedules timers due at `due(i, now)` for `i` in `0..n` (`now` is when the chunk is
/// written) from `PRODUCERS` concurrent producers, as concurrent requests would; returns
/// the time taken.
async fn schedule(store: &Store, n: u64, due: impl Fn(u64, Timestamp) -> Timestamp + Sync) -> anyhow::Result<Duration> {
    const PRODUCERS: u64 = 4;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let producer = || async {
        loop {
            let i = next.fetch_add(CHUNK as u64, Ordering::SeqCst);
            if i >= n {
                return anyhow::Ok(());
            }
            let end = (i + CHUNK as u64).min(n);
            let now = Timestamp::now();
            let mut tx = store.begin().await?;
            tx.schedule_many((i..end).map(|i| due(i, now)).map(timer).collect()).await?;
            tx.commit().await?;
        }
    };
    futures_util::future::try_join_all((0..PRODUCERS).map(|_| producer())).await?;
    Ok(started.elapsed())
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
    let max = args.max_delay_ms();
    let mut out = Vec::new();

    // mixed: delays spread over 0..max, scheduled as fast as possible.
    let n = args.burst;
    let started = Instant::now();
    let took = schedule(&store, n, |i, now| now.plus_millis(spread(i, n, max))).await?;
    let all = recorder.0.wait_for(n, Duration::from_millis(max) + Duration::from_secs(120)).await;
    let taken = recorder.0.take();
    let (late, end_to_end) = (taken.late, taken.last.map(|l| l.duration_since(started)));
    println!("{engine_name}: mixed done ({n} timers, all fired: {all})");
    out.push(
        Report {
            engine: engine_name,
            scenario: "mixed",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: end_to_end.map(|d| rate(n, d)),
            lateness_ms: late,
            ..Default::default()
        }
        .finish(),
    );

    // drain: every timer due at the same instant; fired/s is how fast the backlog drains.
    let due = Timestamp::now().plus_millis(5_000);
    let took = schedule(&store, n, |_, _| due).await?;
    let all = recorder.0.wait_for(n, Duration::from_secs(180)).await;
    let taken = recorder.0.take();
    let (late, span) = (taken.late, taken.span);
    println!("{engine_name}: drain done (all fired: {all})");
    out.push(
        Report {
            engine: engine_name,
            scenario: "drain",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: span.map(|s| rate(n, s)),
            lateness_ms: late,
            ..Default::default()
        }
        .finish(),
    );

    // steady: a fixed rate of timers with delays spread over 0..max.
    let steady = steady(&store, &recorder, engine_name, args.rate, args.steady_duration(), max).await?;
    println!("{engine_name}: steady done");
    out.push(steady);

    engine.stop().await;
    if args.pending > 0
        && let Some(path) = path
    {
        out.push(capacity(&store, &recorder, args, path).await?);
    }
    Ok(out)
}

async fn steady(
    store: &Store,
    recorder: &Arc<Recorder>,
    engine_name: &'static str,
    per_s: u64,
    for_: Duration,
    max: u64,
) -> anyhow::Result<Report> {
    let tick = Duration::from_millis(10);
    let per_tick = (per_s / 100).max(1);
    let ticks = (for_.as_millis() / tick.as_millis()) as u64;
    let total = per_tick * ticks;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    // Each tick's timers are written by a task of their own, as concurrent requests would:
    // a slow commit does not hold back the next tick.
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..ticks {
        interval.tick().await;
        let store = store.clone();
        writers.spawn(async move {
            let now = Timestamp::now();
            let mut tx = store.begin().await?;
            let batch = (0..per_tick).map(|j| timer(now.plus_millis(spread(t * per_tick + j, total, max)))).collect();
            tx.schedule_many(batch).await?;
            tx.commit().await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let took = started.elapsed();
    let all = recorder.0.wait_for(total, Duration::from_millis(max) + Duration::from_secs(60)).await;
    let late = recorder.0.take().late;
    Ok(Report {
        engine: engine_name,
        scenario: "steady",
        timers: total,
        scheduled_per_s: Some(rate(total, took)),
        lateness_ms: late,
        notes: vec![format!("target {per_s}/s, all fired: {all}")],
        ..Default::default()
    }
    .finish())
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
    let rss_before = super::rss_bytes();
    let far = Timestamp::now().plus_millis(86_400_000);
    let took = schedule(store, p, |i, _| far.plus_millis(i64::try_from(i % 3_600_000).unwrap_or(0))).await?;
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
    let mut report = steady(store, recorder, ON_SQLITE, args.rate.min(10_000), Duration::from_secs(5), 1_000).await?;
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
