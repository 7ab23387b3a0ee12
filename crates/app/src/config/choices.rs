//! The settings that name one of a few choices (the process's role, the log format, the
//! delay engine), each an enum read case-insensitively, with an error that lists the
//! choices.

use serde::{Deserialize, Serialize};

/// Which parts of payq this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    /// Serve HTTP and write.
    Api,
    /// Consume messages.
    Worker,
    /// Both.
    All,
}

impl Role {
    /// Whether this process serves the HTTP API.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    /// Whether this process runs workers.
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }

    /// The role's name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that names none of its choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use {choices}")]
pub struct UnknownChoice {
    what: &'static str,
    given: String,
    choices: String,
}

/// Reads one of `choices` (`(name, value)`), or says which names there are.
fn one_of<T: Copy>(what: &'static str, given: &str, choices: &[(&str, T)]) -> Result<T, UnknownChoice> {
    let given = given.trim();
    choices.iter().find(|(name, _)| name.eq_ignore_ascii_case(given)).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        UnknownChoice { what, given: given.chars().take(40).collect(), choices: names.join(", ") }
    })
}

impl TryFrom<String> for LogFormat {
    type Error = UnknownChoice;
    fn try_from(s: String) -> Result<Self, UnknownChoice> {
        one_of("log format", &s, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
    }
}

/// The delay engine: where timers wait and how due work reaches the workers
/// (docs/architecture.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "String")]
pub enum DelayEngine {
    /// `rabbitmq` when `amqp_url` is set, `store` otherwise.
    Auto,
    /// Rows of the SQL store, claimed when due.
    Store,
    /// RabbitMQ's plugin-free delay tiers.
    Rabbitmq,
    /// RabbitMQ's `x-delayed-message` exchange (a plugin).
    RabbitmqPlugin,
}

impl DelayEngine {
    /// The name settings use.
    pub fn as_str(self) -> &'static str {
        match self {
            DelayEngine::Auto => "auto",
            DelayEngine::Store => "store",
            DelayEngine::Rabbitmq => "rabbitmq",
            DelayEngine::RabbitmqPlugin => "rabbitmq-plugin",
        }
    }
}

impl TryFrom<String> for DelayEngine {
    type Error = UnknownChoice;
    fn try_from(s: String) -> Result<Self, UnknownChoice> {
        let engines = [DelayEngine::Auto, DelayEngine::Store, DelayEngine::Rabbitmq, DelayEngine::RabbitmqPlugin];
        let choices: Vec<(&str, DelayEngine)> = engines.iter().map(|e| (e.as_str(), *e)).collect();
        // An empty value (an unset environment variable) means the default.
        if s.trim().is_empty() { Ok(DelayEngine::Auto) } else { one_of("delay engine", &s, &choices) }
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownChoice;
    fn try_from(s: String) -> Result<Self, UnknownChoice> {
        one_of("role", &s, &[("api", Role::Api), ("worker", Role::Worker), ("all", Role::All)])
    }
}
