//! `payq bench`: measures the delay engines against their peers in one run on one machine
//! and prints figures and ratios.
//!
//! `payq bench timers` runs three scenarios on each engine:
//! - **mixed**: schedule N timers with delays spread over 0..max as fast as possible;
//!   reports scheduled/s, end-to-end throughput (N / first schedule → last fire) and lateness;
//! - **drain**: N timers all due at the same instant; fired/s is how fast the backlog drains;
//! - **steady**: schedule at a fixed rate with mixed delays; reports lateness p50/p99/max;
//! - **capacity** (store engine): hold P pending timers; reports process RSS and disk per
//!   pending timer, and the lateness of timers firing while they are pending.
//!
//! Peers: RabbitMQ per-message TTL (one wait queue dead-lettering into a fired queue),
//! RabbitMQ TTL+DLX fixed levels (one wait queue per delay level, delays rounded up), a
//! PostgreSQL `SKIP LOCKED` poller on a plain table, and a Redis sorted-set poller.

mod batched;
mod postgres;
mod rabbit;
mod redis;
mod stats;
mod store;

use clap::{Args, Subcommand};
use stats::Report;
use std::process::ExitCode;
use std::time::Duration;

/// `payq bench …`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Delay engines against RabbitMQ per-message TTL, TTL+DLX fixed levels, a PostgreSQL
    /// SKIP LOCKED poller and a Redis sorted-set poller.
    Timers(TimersArgs),
}

/// Options of `payq bench timers`.
#[derive(Args, Clone)]
pub struct TimersArgs {
    /// Timers in the burst scenario.
    #[arg(long, default_value_t = 200_000)]
    pub burst: u64,
    /// Longest delay in the burst and steady scenarios (delays are spread from 0 to this).
    #[arg(long, default_value = "2s")]
    pub max_delay: payq_domain::HumanDuration,
    /// Timers per second in the steady scenario.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Length of the steady scenario.
    #[arg(long, default_value = "10s")]
    pub steady_for: payq_domain::HumanDuration,
    /// Pending timers in the capacity scenario (store engine only; 0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// RabbitMQ for the peers (a vhost of its own is best); empty skips them.
    #[arg(long, env = "PAYQ_BENCH_AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// PostgreSQL for the SKIP LOCKED poller peer; unreachable skips it.
    #[arg(long, env = "PAYQ_BENCH_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub pg_url: String,
    /// Redis for the sorted-set poller peer; unreachable skips it.
    #[arg(long, env = "PAYQ_BENCH_REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Which engines, comma-separated: all, store (SQLite), store-pg (the store engine on
    /// PostgreSQL), rabbitmq (payq's tiers, classic queues), rabbitmq-quorum (the same on
    /// quorum queues), rabbitmq-ttl, rabbitmq-levels, postgres
    /// (a plain SKIP LOCKED poller), redis (a sorted-set poller). Ratios are against the
    /// first one that runs.
    #[arg(long, default_value = "all")]
    pub engine: String,
}

/// The engines and peers `--engine` may name (besides `all`).
const ENGINES: [&str; 9] =
    ["store", "store-pg", "rabbitmq", "rabbitmq-quorum", "rabbitmq-ttl", "rabbitmq-levels", "postgres", "redis", "all"];

impl TimersArgs {
    /// Refuses an `--engine` list naming something payq does not know.
    fn check_engines(&self) -> anyhow::Result<()> {
        for name in self.engine.split(',').map(str::trim) {
            if !ENGINES.contains(&name) {
                anyhow::bail!("unknown engine {name:?} in --engine; choose from {}", ENGINES.join(", "));
            }
        }
        Ok(())
    }

    fn wants(&self, engine: &str) -> bool {
        self.engine == "all" || self.engine.split(',').any(|e| e.trim() == engine)
    }

    pub(crate) fn max_delay_ms(&self) -> u64 {
        u64::try_from(self.max_delay.as_millis()).unwrap_or(2000)
    }

    pub(crate) fn steady_duration(&self) -> Duration {
        self.steady_for.as_std()
    }
}

/// Runs `payq bench`.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Timers(args) = command;
    args.check_engines()?;
    println!(
        "payq bench timers: burst {} timers, delays 0..{}, steady {}/s for {}, capacity {} pending",
        args.burst, args.max_delay, args.rate, args.steady_for, args.pending
    );
    println!("machine: {} cores, {}", num_cpus(), cpu_model());
    let mut reports: Vec<Report> = Vec::new();
    // The first engine run is the base of the ratios: the store engine (embedded default),
    // then payq's RabbitMQ tiers, then the peers.
    if args.wants("store") {
        reports.extend(store::run(&args).await?);
    }
    if args.wants("store-pg") {
        reports.extend(store::run_postgres(&args).await?);
    }
    if !args.amqp_url.is_empty() {
        for (engine, mode) in [
            ("rabbitmq", rabbit::Mode::Tiers),
            ("rabbitmq-quorum", rabbit::Mode::QuorumTiers),
            ("rabbitmq-ttl", rabbit::Mode::PerMessageTtl),
            ("rabbitmq-levels", rabbit::Mode::FixedLevels),
        ] {
            if args.wants(engine) {
                reports.extend(rabbit::run(&args, mode).await?);
            }
        }
    }
    if args.wants("postgres") {
        reports.extend(postgres::run(&args).await?);
    }
    if args.wants("redis") {
        reports.extend(redis::run(&args).await?);
    }
    stats::print_table(&reports);
    Ok(ExitCode::SUCCESS)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The resident set size of this process, in bytes.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}
