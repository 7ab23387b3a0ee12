//! [`Application`]: opens the store, binds the listener, and runs the HTTP API and the
//! delay engine's workers (per `role`) until shutdown.

use crate::config::{DelayEngine, Settings};
use crate::http::{self, AppState};
use crate::routing::JobRouter;
use crate::usecases::Payq;
use crate::worker::Worker;
use anyhow::Context;
use payq_bus::rabbit::consumer::Consumers;
use payq_bus::rabbit::relay::{DelayMode, Relay, RelayConfig};
use payq_bus::rabbit::tiers::TierQueueType;
use payq_bus::rabbit::topology::Topology;
use payq_bus::{EngineConfig, Lifeline, StoreEngine};
use payq_channels::sim::{Sim, SimChannel};
use payq_domain::Timestamp;
use payq_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long `Idempotency-Key`s are kept (at least the promised 24 hours; docs/operations.md).
const IDEMPOTENCY_RETENTION_MS: i64 = 48 * 3600 * 1000;

/// A payq process, built and ready to run.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    settings: Arc<Settings>,
    admin_token_generated: bool,
}

impl Application {
    /// Opens the store (running migrations) and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let store = Store::open(&settings.database_url)
            .await
            .with_context(|| format!("opening the database {}", payq_store::redact_url(&settings.database_url)))?;
        check_secrets_key(&store, &settings).await?;
        let listener =
            TcpListener::bind(&settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let sim_secret = settings.sim.secret.clone().unwrap_or_else(|| crate::crypto::random_hex(32));
        let sim = SimChannel::new(store.clone(), sim_secret, settings.sim.callback_delay)?;
        let callback_host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
        sim.set_callback_base(
            settings.sim.callback_url.clone().unwrap_or_else(|| format!("http://{callback_host}:{}", addr.port())),
        );
        let (admin_token, admin_token_generated) = match settings.admin_token.clone() {
            Some(t) if !t.is_empty() => (t, false),
            _ => (format!("adm_{}", crate::crypto::random_hex(24)), true),
        };
        if let Some(url) = &settings.amqp_url {
            declare_topology(url, &settings).await?;
            store.announce_all_events();
        }
        let settings = Arc::new(settings);
        if !settings.role.serves_api() && settings.public_url.is_none() {
            tracing::warn!(
                "PAYQ_PUBLIC_URL is not set: real channels (Alipay, WeChat Pay) would be told to post their notifications to this \
                 worker, which does not serve the API; set it to the address of the api processes"
            );
        }
        let payq = Payq::new(store, Arc::new(Sim(sim.clone())), settings.clone())
            .with_listen_address(format!("http://{callback_host}:{}", addr.port()));
        // The daily reconciliation's timer, once merchants have real channels (set once,
        // however many processes start).
        if payq.store().any_channel_secrets().await.context("reading channel credentials")?.is_some() {
            payq.schedule_next_reconciliation().await.context("scheduling the daily reconciliation")?;
        }
        let state = AppState {
            payq,
            admin_token: admin_token.into(),
            sim,
            metrics: crate::telemetry::metrics_handle(),
            openapi: Arc::new(http::openapi_json()),
            limiter: Arc::new(crate::rate_limit::RateLimiter::new(
                settings.http.rate_limit,
                settings.http.rate_limit_burst,
            )),
        };
        Ok(Application { listener, addr, state, settings, admin_token_generated })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token in force.
    pub fn admin_token(&self) -> &str {
        &self.state.admin_token
    }

    /// Whether the admin token was generated because none was configured.
    pub fn admin_token_generated(&self) -> bool {
        self.admin_token_generated
    }

    /// The simulated channel's callback signing secret.
    pub fn sim_secret(&self) -> &str {
        self.state.sim.secret()
    }

    /// The simulated channel (tests wait on what it has sent).
    pub fn sim_channel(&self) -> Arc<payq_channels::sim::SimChannel> {
        self.state.sim.clone()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.state.payq.store()
    }

    /// Serves until `shutdown` is cancelled, then drains: stops accepting requests, lets
    /// handlers in flight finish, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { listener, state, settings, .. } = self;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(url) = settings.amqp_url.clone() {
            // Every process relays its outbox (the API's orders and the workers' retries).
            let relay = Relay {
                store: state.payq.store().clone(),
                amqp_url: url.clone(),
                topology: topology(&settings),
                mode: delay_mode(&settings),
                router: Arc::new(JobRouter::new(state.payq.store().clone())),
                config: RelayConfig {
                    republish_grace: settings.rabbitmq.republish_grace.as_std(),
                    publish_ahead: settings.rabbitmq.publish_ahead.as_std(),
                    ..RelayConfig::default()
                },
            };
            let stop = shutdown.clone();
            tasks.spawn(async move {
                relay.run(stop).await;
                Ok(())
            });
        }
        if settings.role.runs_workers()
            && let Some(url) = settings.amqp_url.clone()
        {
            let consumers = Consumers {
                store: state.payq.store().clone(),
                handler: Arc::new(Worker::new(state.payq.clone())),
                amqp_url: url,
                topology: topology(&settings),
                prefetch: settings.rabbitmq.prefetch,
                engine: engine_config(&settings),
            };
            let stop = shutdown.clone();
            tasks.spawn(async move {
                consumers.run(stop).await;
                Ok(())
            });
        } else if settings.role.runs_workers() {
            let engine = StoreEngine::new(
                state.payq.store().clone(),
                Arc::new(Worker::new(state.payq.clone())),
                engine_config(&settings),
            );
            let stop = shutdown.clone();
            tasks.spawn(async move {
                engine.run(stop).await;
                Ok(())
            });
        }
        if settings.role.serves_api() {
            // The rate limiter forgets merchants idle long enough to have a full burst again.
            let limiter = state.limiter.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                while tokio::time::timeout(Duration::from_secs(60), stop.cancelled()).await.is_err() {
                    limiter.forget_idle();
                }
                Ok(())
            });
        }
        if settings.role.runs_workers() {
            let store = state.payq.store().clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                housekeeping(store, stop).await;
                Ok(())
            });
        }
        let lifeline = Lifeline {
            store: state.payq.store().clone(),
            role: settings.role.as_str().to_owned(),
            heartbeat: settings.engine.heartbeat.as_std(),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            lifeline.run(stop).await;
            Ok(())
        });
        // The simulated channel stops with payq: what it has not settled, the next process
        // resumes.
        let sim = state.sim.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            stop.cancelled().await;
            sim.stop();
            Ok(())
        });
        let store = state.payq.store().clone();
        if settings.role.serves_api() {
            match state.sim.resume().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(payments = n, "sim channel resumed pending payments"),
                Err(e) => {
                    tracing::warn!(error = %e, "sim channel could not resume pending payments")
                }
            }
        }
        // Every role answers on its listener: the API, or (a worker) the probes alone.
        let app = if settings.role.serves_api() { http::router(state) } else { http::probes_router(state) };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("HTTP server")
        });
        while let Some(done) = tasks.join_next().await {
            done.context("task panicked")??;
        }
        // Every handler has finished: hand back anything still claimed, and leave.
        if let Err(e) = store.deregister().await {
            tracing::warn!(error = %e, "could not leave the process registry");
        }
        // Commit the last batch and fold the write-ahead log into the database file, so the
        // process ends with nothing in flight (nothing to do on PostgreSQL).
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(error = %e, "could not checkpoint the store on the way out");
        }
        Ok(())
    }
}

/// The RabbitMQ topology these settings name.
pub fn topology(settings: &Settings) -> Topology {
    let mut t = Topology::new(settings.rabbitmq.prefix.clone());
    t.delivery_limit = settings.rabbitmq.delivery_limit;
    t.tiers.queue_type = tier_queue_type(settings);
    t
}

/// The delay tiers' queue type: the one set, else quorum on a cluster (several nodes named
/// in `amqp_url`: a node lost must not lose a tier) and classic on one node.
pub fn tier_queue_type(settings: &Settings) -> TierQueueType {
    settings.rabbitmq.tier_queue_type.unwrap_or_else(|| {
        let nodes = settings.amqp_url.as_deref().map_or(0, |url| payq_bus::rabbit::connect::nodes(url).len());
        if nodes > 1 { TierQueueType::Quorum } else { TierQueueType::default() }
    })
}

fn delay_mode(settings: &Settings) -> DelayMode {
    match settings.delay_engine() {
        DelayEngine::RabbitmqPlugin => DelayMode::Plugin,
        DelayEngine::Store => DelayMode::Store,
        DelayEngine::Rabbitmq | DelayEngine::Auto => DelayMode::Tiers,
    }
}

/// Declares the topology (idempotent) at start-up, and checks that the delayed-message
/// plugin is there when it is the delay engine. A broker that does not answer is not an
/// error: the API starts, the outbox holds messages, and the relay and consumers declare
/// the topology when they connect.
async fn declare_topology(url: &str, settings: &Settings) -> anyhow::Result<()> {
    let connect = payq_bus::rabbit::connect::connect_first(url, 0);
    let conn = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok((conn, _))) => conn,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "RabbitMQ does not answer; starting anyway (messages wait in the outbox)");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!("RabbitMQ did not answer within 5 s; starting anyway (messages wait in the outbox)");
            return Ok(());
        }
    };
    let topology = topology(settings);
    let channel = conn.create_channel().await.context("opening a RabbitMQ channel")?;
    topology.declare(&channel).await.context("declaring the RabbitMQ topology")?;
    if delay_mode(settings) == DelayMode::Plugin {
        payq_bus::rabbit::declare::declare_plugin_exchange(&conn, &topology).await?;
    }
    let _ = conn.close(200, "topology declared".into()).await;
    Ok(())
}

fn engine_config(settings: &Settings) -> EngineConfig {
    let e = &settings.engine;
    EngineConfig {
        batch: e.batch,
        concurrency: e.concurrency,
        delivery_concurrency: e.delivery_concurrency,
        lease: e.lease.as_std(),
        max_attempts: e.max_attempts,
        base_backoff: e.base_backoff.as_std(),
        max_backoff: e.max_backoff.as_std(),
        ..EngineConfig::default()
    }
}

/// Periodic work: the pending-messages, dead-letter and open-discrepancy gauges every 15 s, expired
/// idempotency keys every hour.
async fn housekeeping(store: Store, shutdown: CancellationToken) {
    let mut last_expiry: Option<tokio::time::Instant> = None;
    // Kinds reported before: one that drained is reported as 0, not left at its last value.
    let mut reported = std::collections::BTreeSet::<String>::new();
    loop {
        if last_expiry.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_expiry = Some(tokio::time::Instant::now());
            let cutoff = Timestamp::now().plus_millis(-IDEMPOTENCY_RETENTION_MS);
            match store.idempotency_expire(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "expired idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "could not expire idempotency keys"),
            }
        }
        if let Ok(n) = store.dead_letter_count().await {
            metrics::gauge!("payq_dead_letters").set(n as f64);
        }
        crate::usecases::refresh_discrepancy_gauge(&store).await;
        if let Ok(by_kind) = store.pending_by_kind().await {
            metrics::gauge!("payq_messages_pending").set(by_kind.iter().map(|(_, n)| *n).sum::<i64>() as f64);
            let now: std::collections::BTreeSet<String> = by_kind.iter().map(|(k, _)| k.clone()).collect();
            for drained in reported.difference(&now) {
                metrics::gauge!("payq_messages_pending_by_kind", "kind" => drained.clone()).set(0.0);
            }
            for (kind, n) in by_kind {
                metrics::gauge!("payq_messages_pending_by_kind", "kind" => kind).set(n as f64);
            }
            reported.extend(now);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Counting a large queue is an index scan: keep it infrequent.
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
    }
}

/// Refuses to start when merchants have sealed channel credentials that this process could
/// not open: `PAYQ_SECRETS_KEY` missing, or not the key that sealed them.
async fn check_secrets_key(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    let Some(sealed) = store.any_channel_secrets().await.context("reading channel credentials")? else {
        return Ok(());
    };
    let Some(key) = &settings.secrets_key else {
        anyhow::bail!(
            "merchants have real-channel credentials, which payq stores encrypted with PAYQ_SECRETS_KEY: set \
             PAYQ_SECRETS_KEY to the key they were sealed with (64 hex characters)"
        );
    };
    crate::secrets::SecretsKey::from_hex(key)?
        .open(&sealed)
        .map_err(|e| anyhow::anyhow!("{e}: set PAYQ_SECRETS_KEY to the key the credentials were sealed with"))?;
    Ok(())
}
