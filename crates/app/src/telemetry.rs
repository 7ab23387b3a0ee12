//! Logs and metrics: a `tracing` subscriber configured by `PAYQ_LOG` / `PAYQ_LOG_FORMAT`,
//! and one process-wide Prometheus recorder served at `/metrics`, with a description of
//! every metric payq exports (docs/operations.md lists them) and the process's own figures.

use crate::config::LogFormat;
use crate::jobs::JobKind;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber on stderr. Calling it twice keeps the first one. ANSI
/// colours only when stderr is a terminal; noisy dependencies (sqlx's statement and
/// PostgreSQL notice logs) at `warn` unless the filter names them.
pub fn init_logs(filter: &str, format: LogFormat) {
    let filter = if filter.contains("sqlx") { filter.to_owned() } else { format!("{filter},sqlx=warn") };
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric payq exports: name, kind and its `# HELP` text.
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    ("payq_http_requests_total", MetricKind::Counter, "HTTP requests answered, by route, method and status class"),
    ("payq_http_request_duration_seconds", MetricKind::Histogram, "HTTP request latency, by route and method"),
    ("payq_timer_lateness_seconds", MetricKind::Histogram, "How late messages ran after their due time, by kind"),
    ("payq_messages_pending", MetricKind::Gauge, "Messages waiting in the store (timers, jobs, deliveries)"),
    ("payq_messages_pending_by_kind", MetricKind::Gauge, "Messages waiting in the store, by kind"),
    ("payq_messages_fired_total", MetricKind::Counter, "Messages handled successfully by the store engine, by kind"),
    ("payq_messages_retried_total", MetricKind::Counter, "Message attempts that failed and were rescheduled, by kind"),
    ("payq_messages_failed_total", MetricKind::Counter, "Messages dead-lettered after their last attempt, by kind"),
    ("payq_dead_letters", MetricKind::Gauge, "Dead letters waiting for an operator (replay or purge)"),
    ("payq_webhook_deliveries_total", MetricKind::Counter, "Webhook delivery attempts, by outcome"),
    (
        "payq_store_writer_wait_seconds",
        MetricKind::Histogram,
        "SQLite: how long a write transaction waited for the writer",
    ),
    ("payq_store_batch_transactions", MetricKind::Histogram, "SQLite: write transactions per group commit"),
    (
        "payq_store_commit_seconds",
        MetricKind::Histogram,
        "SQLite: duration of one group commit (COMMIT with its fsync)",
    ),
    ("payq_outbox_published_total", MetricKind::Counter, "RabbitMQ: outbox messages published and confirmed"),
    ("payq_amqp_published_total", MetricKind::Counter, "RabbitMQ: messages published (outbox, bundles, splits)"),
    (
        "payq_amqp_delivered_total",
        MetricKind::Counter,
        "RabbitMQ: deliveries taken (work queues, dead letters, bundles)",
    ),
    (
        "payq_store_pg_round_trips_total",
        MetricKind::Counter,
        "PostgreSQL: round trips (statements, BEGIN, COMMIT, ROLLBACK)",
    ),
    ("payq_outbox_publish_failures_total", MetricKind::Counter, "RabbitMQ: outbox publications that failed (retried)"),
    (
        "payq_outbox_republished_total",
        MetricKind::Counter,
        "RabbitMQ: published messages found lost and published again",
    ),
    (
        "payq_delay_bundled_messages_total",
        MetricKind::Counter,
        "RabbitMQ: delayed messages published from the bundles that came out of the tiers",
    ),
    (
        "payq_delay_dropped_in_split_total",
        MetricKind::Counter,
        "RabbitMQ: delayed messages out of the tiers not published again (handled or cancelled meanwhile)",
    ),
    (
        "payq_deliveries_dropped_total",
        MetricKind::Counter,
        "RabbitMQ: stale or duplicate deliveries acknowledged unhandled",
    ),
    (
        "payq_reconciliation_discrepancies",
        MetricKind::Gauge,
        "Reconciliation discrepancies not yet resolved, by channel and kind",
    ),
    (
        "payq_broker_dead_letters_total",
        MetricKind::Counter,
        "RabbitMQ: messages the broker dead-lettered (delivery limit)",
    ),
];

/// The outcomes `payq_webhook_deliveries_total` counts.
const DELIVERY_OUTCOMES: [&str; 4] = ["delivered", "failed", "throttled", "refused"];

/// Describes every metric and sets counters and gauges to 0, so each one appears in
/// `/metrics` from the start (with its known labels), not after its first event.
fn register_metrics() {
    for &(name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(name, help),
            MetricKind::Gauge => metrics::describe_gauge!(name, help),
            MetricKind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for kind in JobKind::ALL.map(JobKind::as_str) {
        for name in ["payq_messages_fired_total", "payq_messages_retried_total", "payq_messages_failed_total"] {
            metrics::counter!(name, "kind" => kind).absolute(0);
        }
        metrics::gauge!("payq_messages_pending_by_kind", "kind" => kind).set(0.0);
    }
    for channel in payq_domain::BillChannel::ALL {
        for kind in payq_domain::DiscrepancyKind::ALL {
            metrics::gauge!("payq_reconciliation_discrepancies", "channel" => channel.as_str(), "kind" => kind.as_str())
                .set(0.0);
        }
    }
    for outcome in DELIVERY_OUTCOMES {
        metrics::counter!("payq_webhook_deliveries_total", "outcome" => outcome).absolute(0);
    }
    for &(name, kind, _) in METRICS {
        let labelled = matches!(
            name,
            "payq_http_requests_total"
                | "payq_messages_pending_by_kind"
                | "payq_messages_fired_total"
                | "payq_messages_retried_total"
                | "payq_messages_failed_total"
                | "payq_webhook_deliveries_total"
                | "payq_reconciliation_discrepancies"
        );
        match kind {
            MetricKind::Counter if !labelled => metrics::counter!(name).absolute(0),
            MetricKind::Gauge if !labelled => metrics::gauge!(name).set(0.0),
            MetricKind::Counter | MetricKind::Gauge | MetricKind::Histogram => {}
        }
    }
}

static METRICS_HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use. The process
/// metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open file
/// descriptors, threads, …) are refreshed at every scrape by [`render_metrics`].
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS_HANDLE
        .get_or_init(|| {
            let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder =
                PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds).ok()?;
            let handle = builder.install_recorder().ok()?;
            register_metrics();
            process_collector().describe();
            let upkeep = handle.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        })
        .clone()
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The Prometheus text of every metric, with the process metrics read now.
pub fn render_metrics(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}
