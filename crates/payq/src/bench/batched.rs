//! The mixed, drain and steady scenarios for peers that take timers as batches of due times
//! (the PostgreSQL poller and the Redis sorted set): each peer supplies how to insert one
//! batch, and its own pollers record what fires.

use super::TimersArgs;
use super::stats::{Fired, Report, rate, spread};
use payq_domain::Timestamp;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Timers per inserted batch while scheduling as fast as possible.
const CHUNK: u64 = 2_000;

/// A peer's way to insert a batch of due times (Unix milliseconds).
pub trait InsertBatch: Clone + Send + Sync + 'static {
    /// Inserts timers due at `dues`.
    fn insert(&self, dues: Vec<i64>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Inserts `n` timers due at `due(i, now)` from 4 concurrent producers; returns how long it took.
pub async fn schedule<P: InsertBatch>(
    peer: &P,
    n: u64,
    due: impl Fn(u64, Timestamp) -> Timestamp + Sync,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let producer = || async {
        loop {
            let i = next.fetch_add(CHUNK, Ordering::SeqCst);
            if i >= n {
                return anyhow::Ok(());
            }
            let now = Timestamp::now();
            peer.insert((i..(i + CHUNK).min(n)).map(|i| due(i, now).millis()).collect()).await?;
        }
    };
    futures_util::future::try_join_all((0..4).map(|_| producer())).await?;
    Ok(started.elapsed())
}

/// Runs the three scenarios against `peer`, whose pollers record into `fired`.
pub async fn scenarios<P: InsertBatch>(
    args: &TimersArgs,
    engine: &'static str,
    peer: &P,
    fired: &Fired,
) -> anyhow::Result<Vec<Report>> {
    let (n, max) = (args.burst, args.max_delay_ms());
    let mut out = Vec::new();

    eprintln!("{engine}: mixed: scheduling {n} timers due within {max} ms…");
    let started = Instant::now();
    let took = schedule(peer, n, |i, now| now.plus_millis(spread(i, n, max))).await?;
    let all =
        fired.wait_for(n, Duration::from_millis(max) + Duration::from_secs(300), &format!("{engine}: mixed")).await;
    let taken = fired.take();
    println!("{engine}: mixed done (all fired: {all})");
    out.push(
        Report {
            engine,
            scenario: "mixed",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: taken.last.map(|l| rate(n, l.duration_since(started))),
            lateness_ms: taken.late,
            ..Default::default()
        }
        .finish(),
    );

    eprintln!("{engine}: drain: scheduling {n} timers all due in 5 s…");
    let due = Timestamp::now().plus_millis(5_000);
    let took = schedule(peer, n, |_, _| due).await?;
    let all = fired.wait_for(n, Duration::from_secs(300), &format!("{engine}: drain")).await;
    let taken = fired.take();
    println!("{engine}: drain done (all fired: {all})");
    out.push(
        Report {
            engine,
            scenario: "drain",
            timers: n,
            scheduled_per_s: Some(rate(n, took)),
            fired_per_s: taken.span.map(|s| rate(n, s)),
            lateness_ms: taken.late,
            ..Default::default()
        }
        .finish(),
    );

    out.push(steady(peer, engine, fired, args.rate, args.steady_duration(), max).await?);
    Ok(out)
}

/// Schedules `per_s` timers a second for `for_`, delays spread over `0..max`, each 10 ms
/// tick's batch written by a task of its own (a slow insert does not hold back the next
/// tick); reports the lateness of all of them once they fired.
pub async fn steady<P: InsertBatch>(
    peer: &P,
    engine: &'static str,
    fired: &Fired,
    per_s: u64,
    for_: Duration,
    max: u64,
) -> anyhow::Result<Report> {
    eprintln!("{engine}: steady: {per_s} timers/s for {for_:?}…");
    let tick = Duration::from_millis(10);
    let per_tick = (per_s / 100).max(1);
    let ticks = u64::try_from(for_.as_millis() / tick.as_millis()).unwrap_or(0);
    let total = per_tick * ticks;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..ticks {
        interval.tick().await;
        let peer = peer.clone();
        writers.spawn(async move {
            let now = Timestamp::now();
            let dues = (0..per_tick).map(|j| now.plus_millis(spread(t * per_tick + j, total, max)).millis()).collect();
            peer.insert(dues).await
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let took = started.elapsed();
    let all = fired
        .wait_for(total, Duration::from_millis(max) + Duration::from_secs(120), &format!("{engine}: steady"))
        .await;
    let late = fired.take().late;
    println!("{engine}: steady done");
    Ok(Report {
        engine,
        scenario: "steady",
        timers: total,
        scheduled_per_s: Some(rate(total, took)),
        lateness_ms: late,
        notes: vec![format!("target {per_s}/s, all fired: {all}")],
        ..Default::default()
    }
    .finish())
}
