//! Configuration: defaults < `payq.toml` (or the file named by `PAYQ_CONFIG`) < `PAYQ_*`
//! environment < command-line flags, merged with the `config` crate.

use anyhow::Context;
use payq_domain::HumanDuration;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod choices;
pub use choices::{DelayEngine, LogFormat, Role, UnknownChoice};

/// Everything payq can be configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to listen on (`PAYQ_LISTEN`).
    pub listen: String,
    /// `sqlite://path` (`PAYQ_DATABASE_URL`).
    pub database_url: String,
    /// RabbitMQ URL (`PAYQ_AMQP_URL`); unset in embedded mode.
    pub amqp_url: Option<String>,
    /// Admin bearer token (`PAYQ_ADMIN_TOKEN`); a random one is generated if unset.
    pub admin_token: Option<String>,
    /// The key that seals channel credentials at rest (`PAYQ_SECRETS_KEY`, 64 hex
    /// characters); needed once a merchant has real-channel credentials.
    pub secrets_key: Option<String>,
    /// The base URL payment channels call back (`PAYQ_PUBLIC_URL`); default: the listen
    /// address.
    pub public_url: Option<String>,
    /// `api`, `worker` or `all` (`PAYQ_ROLE`).
    pub role: Role,
    /// Log filter, e.g. `info,payq=debug` (`PAYQ_LOG`).
    pub log: String,
    /// `text` or `json` (`PAYQ_LOG_FORMAT`).
    pub log_format: LogFormat,
    pub delay: DelaySettings,
    pub payment: PaymentSettings,
    pub webhook: WebhookSettings,
    pub risk: RiskSettings,
    pub sim: SimSettings,
    pub engine: EngineSettings,
    pub http: HttpSettings,
    pub rabbitmq: RabbitSettings,
    pub reconciliation: ReconciliationSettings,
}

/// `[reconciliation]`: the daily reconciliation against the channels' bills
/// (docs/operations.md, "Reconciliation").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconciliationSettings {
    /// When each day's reconciliation starts, `HH:MM` (`PAYQ_RECONCILIATION__AT`): both
    /// channels' bills for the previous day are ready by 10:00 China time.
    pub at: String,
    /// The time zone that dates the bills and `at` (`PAYQ_RECONCILIATION__TIMEZONE`), an
    /// IANA name.
    pub timezone: String,
    /// How long to wait before asking again for a bill that is not ready.
    pub retry_every: HumanDuration,
    /// How long to keep asking before the run fails.
    pub retry_for: HumanDuration,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        ReconciliationSettings {
            at: "10:00".into(),
            timezone: "Asia/Shanghai".into(),
            retry_every: HumanDuration::from_millis(30 * 60_000),
            retry_for: HumanDuration::from_millis(24 * 3_600_000),
        }
    }
}

impl ReconciliationSettings {
    /// The time zone, checked.
    pub fn zone(&self) -> anyhow::Result<jiff::tz::TimeZone> {
        jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|e| anyhow::anyhow!("reconciliation.timezone {:?} is not a time zone: {e}", self.timezone))
    }

    /// `at` as (hour, minute, second), checked: `HH:MM`, or `HH:MM:SS`.
    pub fn time_of_day(&self) -> anyhow::Result<(i8, i8, i8)> {
        let bad = || anyhow::anyhow!("reconciliation.at must be HH:MM (00:00 to 23:59), got {:?}", self.at);
        let parts: Vec<&str> = self.at.split(':').collect();
        if !matches!(parts.len(), 2 | 3) || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let number = |i: usize| -> anyhow::Result<i8> { parts.get(i).map_or(Ok(0), |p| p.parse().map_err(|_| bad())) };
        let (h, m, sec) = (number(0)?, number(1)?, number(2)?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&sec) {
            return Err(bad());
        }
        Ok((h, m, sec))
    }
}

/// `[rabbitmq]`: the distributed mode's transport (used when `amqp_url` is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RabbitSettings {
    /// Prefix of every exchange and queue name (`payq` → `payq.events`, `payq.timers`, …).
    pub prefix: String,
    /// Unacknowledged deliveries per work queue and worker process.
    pub prefetch: u16,
    /// Deliveries of one message before RabbitMQ dead-letters it (`x-delivery-limit`).
    pub delivery_limit: i64,
    /// Queue type of the delay tiers: `classic` (fast) or `quorum` (replicated). Unset:
    /// quorum when `amqp_url` names several nodes (a cluster), classic on one node.
    pub tier_queue_type: Option<payq_bus::rabbit::tiers::TierQueueType>,
    /// A published message not handled by its due time plus this long is published again
    /// (the database row is the source of truth; the broker's copy may be lost).
    pub republish_grace: HumanDuration,
    /// How far ahead of its due time a timer is published into RabbitMQ's delays; until
    /// then it waits in the database, where cancelling it costs one `DELETE`.
    pub publish_ahead: HumanDuration,
}

impl Default for RabbitSettings {
    fn default() -> Self {
        RabbitSettings {
            prefix: "payq".into(),
            prefetch: 32,
            delivery_limit: 10,
            tier_queue_type: None,
            republish_grace: HumanDuration::from_millis(60_000),
            publish_ahead: HumanDuration::from_millis(1_000),
        }
    }
}

/// `[http]`: the API's limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Requests per second each merchant may make (0: unlimited).
    pub rate_limit: u32,
    /// Requests a merchant may make at once above the rate.
    pub rate_limit_burst: u32,
}

/// `[delay]`: the delay engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DelaySettings {
    /// `store`, `rabbitmq` or `rabbitmq-plugin` (`PAYQ_DELAY_ENGINE`); `auto` (the
    /// default) is `rabbitmq` when `amqp_url` is set and `store` otherwise.
    pub engine: DelayEngine,
}

/// `[payment]`: payment follow-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentSettings {
    /// Waits between queries of the channel when no callback arrives
    /// (`PAYQ_PAYMENT_QUERY_SCHEDULE`), comma-separated.
    pub query_schedule: String,
    /// Longest wait for a real channel's gateway (Alipay, WeChat Pay) before the result counts as
    /// unknown and the query schedule finds it.
    pub channel_timeout: HumanDuration,
    /// How long a pay request through a real channel waits for the channel's answer (its QR
    /// code or link) before it answers without one; the start goes on, and the order shows
    /// the next action once the channel answered.
    pub start_wait: HumanDuration,
    /// How long after its creation WeChat Pay lets a trade be closed (its rule: 5 minutes);
    /// an order that times out sooner closes at once and its trade later.
    pub wechatpay_close_after: HumanDuration,
}

impl PaymentSettings {
    /// How long a claim on a channel call lasts (see docs/architecture.md, "One call per
    /// channel step"): twice the channel timeout and a second, so that a holder that is
    /// still waiting for its answer never loses the claim to the next try.
    pub fn call_lease(&self) -> std::time::Duration {
        self.channel_timeout.as_std().saturating_mul(2) + std::time::Duration::from_secs(1)
    }
}

/// `[webhook]`: deliveries to merchants' webhook URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Waits before each further attempt (`PAYQ_WEBHOOK_RETRY_SCHEDULE`), comma-separated:
    /// N entries mean 1 + N attempts, then the delivery is dead-lettered.
    pub retry_schedule: String,
    /// How long to wait for the merchant's answer.
    pub timeout: HumanDuration,
    /// Deliveries to one merchant at once, per process: a merchant whose endpoint hangs
    /// uses this many delivery slots and no more.
    pub per_merchant_concurrency: usize,
    /// Allow webhook URLs on loopback and private addresses (`PAYQ_WEBHOOK__ALLOW_PRIVATE`):
    /// for local development and tests only.
    pub allow_private: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            retry_schedule: "15s,15s,30s,3m,10m,20m,30m,30m,30m,60m,3h,3h,3h,6h,6h".into(),
            timeout: HumanDuration::from_millis(10_000),
            per_merchant_concurrency: 16,
            allow_private: false,
        }
    }
}

/// `[risk]`: the rules every payment request passes (README, "Configuration").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskSettings {
    /// Largest order amount in minor units (any currency).
    pub max_amount: i64,
    /// Most payment requests per customer per minute.
    pub velocity: u32,
    /// Most payment volume per merchant per day in minor units; unlimited when unset.
    pub merchant_daily_volume: Option<i64>,
    /// Customers who may not pay.
    pub blocked_customers: Vec<String>,
}

/// `[sim]`: the simulated channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimSettings {
    /// Secret the channel signs callbacks with (`PAYQ_SIM_SECRET`); random if unset.
    pub secret: Option<String>,
    /// Default delay before the channel calls back.
    pub callback_delay: HumanDuration,
    /// Base URL the channel calls back (`PAYQ_SIM__CALLBACK_URL`), e.g. the load balancer in
    /// front of the API processes; this process's own address if unset.
    pub callback_url: Option<String>,
}

/// `[engine]`: tuning of the store delay engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Handlers at once in the work lane (payments, timers, refunds).
    pub concurrency: usize,
    /// Handlers at once in the deliveries lane (webhooks).
    pub delivery_concurrency: usize,
    /// How often this process beats its heartbeat; silent for three beats, it counts as
    /// dead and its claims are released.
    pub heartbeat: HumanDuration,
    pub batch: u32,
    pub max_attempts: u32,
    pub base_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    pub lease: HumanDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://payq-data/payq.db".into(),
            amqp_url: None,
            admin_token: None,
            secrets_key: None,
            public_url: None,
            role: Role::All,
            log: "info".into(),
            log_format: LogFormat::Text,
            delay: DelaySettings::default(),
            payment: PaymentSettings::default(),
            webhook: WebhookSettings::default(),
            risk: RiskSettings::default(),
            sim: SimSettings::default(),
            engine: EngineSettings::default(),
            http: HttpSettings::default(),
            rabbitmq: RabbitSettings::default(),
            reconciliation: ReconciliationSettings::default(),
        }
    }
}

impl Default for DelaySettings {
    fn default() -> Self {
        DelaySettings { engine: DelayEngine::Auto }
    }
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            query_schedule: "2s,10s,30s,1m,5m".into(),
            channel_timeout: HumanDuration::from_millis(10_000),
            start_wait: HumanDuration::from_millis(3_000),
            wechatpay_close_after: HumanDuration::from_millis(300_000),
        }
    }
}

impl Default for RiskSettings {
    fn default() -> Self {
        RiskSettings {
            max_amount: 10_000_000,
            velocity: 10,
            merchant_daily_volume: None,
            blocked_customers: Vec::new(),
        }
    }
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { secret: None, callback_delay: HumanDuration::from_millis(200), callback_url: None }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            concurrency: 64,
            delivery_concurrency: 64,
            heartbeat: HumanDuration::from_millis(1_000),
            batch: 256,
            max_attempts: 10,
            base_backoff: HumanDuration::from_millis(500),
            max_backoff: HumanDuration::from_millis(600_000),
            lease: HumanDuration::from_millis(60_000),
        }
    }
}

/// The shortest admin token payq starts with.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The documented environment variables (README, "Configuration") and the setting each one sets.
const ENV_NAMES: &[(&str, &str)] = &[
    ("PAYQ_LISTEN", "listen"),
    ("PAYQ_DATABASE_URL", "database_url"),
    ("PAYQ_AMQP_URL", "amqp_url"),
    ("PAYQ_ADMIN_TOKEN", "admin_token"),
    ("PAYQ_ROLE", "role"),
    ("PAYQ_DELAY_ENGINE", "delay.engine"),
    ("PAYQ_PAYMENT_QUERY_SCHEDULE", "payment.query_schedule"),
    ("PAYQ_WEBHOOK_RETRY_SCHEDULE", "webhook.retry_schedule"),
    ("PAYQ_LOG", "log"),
    ("PAYQ_LOG_FORMAT", "log_format"),
    ("PAYQ_SIM_SECRET", "sim.secret"),
    ("PAYQ_SECRETS_KEY", "secrets_key"),
    ("PAYQ_PUBLIC_URL", "public_url"),
];

impl Settings {
    /// Merges the layers. `file` is the config file (else `PAYQ_CONFIG`, else `payq.toml`
    /// if present); `flags` are `(setting, value)` pairs from the command line.
    pub fn load(file: Option<PathBuf>, flags: &[(&str, String)]) -> anyhow::Result<Settings> {
        let explicit = file.or_else(|| std::env::var_os("PAYQ_CONFIG").map(PathBuf::from));
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&Settings::default()).context("default settings")?);
        let file = match &explicit {
            Some(path) => config::File::from(path.as_path()).required(true),
            None => config::File::with_name("payq.toml").required(false),
        };
        check_known_keys(
            config::Config::builder().add_source(file.clone()).build().context("reading the config file")?,
        )
        .context("in the config file")?;
        builder = builder.add_source(file);
        // A nested setting from the environment must name a real one, like the file's.
        let mut nested = config::Config::builder();
        for (name, value) in std::env::vars().filter(|(n, _)| n.starts_with("PAYQ_") && n.contains("__")) {
            let key = name["PAYQ_".len()..].to_lowercase().replace("__", ".");
            nested = nested.set_override(key, value).context("environment")?;
        }
        check_known_keys(nested.build().context("reading the environment")?).context("in PAYQ_*__* variables")?;
        // Nested settings also come from PAYQ_SECTION__KEY, e.g. PAYQ_RISK__MAX_AMOUNT.
        builder = builder.add_source(
            config::Environment::with_prefix("PAYQ").prefix_separator("_").separator("__").try_parsing(true),
        );
        for (env, key) in ENV_NAMES {
            if let Ok(value) = std::env::var(env) {
                builder = builder.set_override(*key, value).context("environment override")?;
            }
        }
        for (key, value) in flags {
            builder = builder.set_override(*key, value.as_str()).context("flag override")?;
        }
        let settings: Settings =
            builder.build().context("reading configuration")?.try_deserialize().context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    /// The delay engine in force, with `auto` resolved.
    pub fn delay_engine(&self) -> DelayEngine {
        match self.delay.engine {
            DelayEngine::Auto if self.amqp_url.is_some() => DelayEngine::Rabbitmq,
            DelayEngine::Auto => DelayEngine::Store,
            chosen => chosen,
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.reconciliation.zone()?;
        self.reconciliation.time_of_day()?;
        let engine = self.delay_engine();
        if engine != DelayEngine::Store && self.amqp_url.is_none() {
            anyhow::bail!("delay engine {:?} needs RabbitMQ: set PAYQ_AMQP_URL (or use \"store\")", engine.as_str());
        }
        if self.amqp_url.is_some() && !self.database_url.starts_with("postgres") {
            anyhow::bail!(
                "PAYQ_AMQP_URL selects the distributed mode, which shares one PostgreSQL database between \
                 processes: set PAYQ_DATABASE_URL=postgres://… (the embedded mode needs neither)"
            );
        }
        if let Some(token) = &self.admin_token
            && !token.is_empty()
            && token.chars().count() < MIN_ADMIN_TOKEN_CHARS
        {
            anyhow::bail!(
                "PAYQ_ADMIN_TOKEN is too short: use at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 24`)"
            );
        }
        if let Some(key) = &self.secrets_key {
            crate::secrets::SecretsKey::from_hex(key)?;
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("PAYQ_PUBLIC_URL must be an http:// or https:// URL, got {url:?}");
        }
        parse_schedule(&self.payment.query_schedule).context("payment.query_schedule")?;
        parse_schedule(&self.webhook.retry_schedule).context("webhook.retry_schedule")?;
        Ok(())
    }

    /// The payment query schedule as durations.
    pub fn query_schedule(&self) -> Vec<HumanDuration> {
        parse_schedule(&self.payment.query_schedule).unwrap_or_default()
    }

    /// The webhook retry schedule as durations.
    pub fn webhook_retry_schedule(&self) -> Vec<HumanDuration> {
        parse_schedule(&self.webhook.retry_schedule).unwrap_or_default()
    }
}

/// Refuses a setting payq does not have (a typo such as `listne` or `max_amont` would
/// otherwise be ignored), naming the settings that exist where it was found.
fn check_known_keys(source: config::Config) -> anyhow::Result<()> {
    let given = source.try_deserialize::<serde_json::Value>().unwrap_or(serde_json::Value::Null);
    let known = serde_json::to_value(Settings::default()).context("default settings")?;
    unknown_key(&given, &known, "").map_or(Ok(()), |(key, choices)| {
        anyhow::bail!("unknown setting `{key}`; the settings here are: {}", choices.join(", "))
    })
}

/// The first key of `given` that `known` lacks, with the keys `known` has at that level.
fn unknown_key(given: &serde_json::Value, known: &serde_json::Value, path: &str) -> Option<(String, Vec<String>)> {
    let (serde_json::Value::Object(given), serde_json::Value::Object(known)) = (given, known) else {
        return None;
    };
    for (key, value) in given {
        let full = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        match known.get(key) {
            None => return Some((full, known.keys().cloned().collect())),
            Some(inner) => {
                if let Some(found) = unknown_key(value, inner, &full) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Parses `"15s,30s,3m"` into durations.
pub fn parse_schedule(s: &str) -> anyhow::Result<Vec<HumanDuration>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<HumanDuration>().map_err(anyhow::Error::from))
        .collect()
}

#[cfg(test)]
mod tests;
