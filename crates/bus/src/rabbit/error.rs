//! What can go wrong between payq and RabbitMQ outside a single publication (which has its
//! own [`super::publisher::PublishError`]): declaring the topology, splitting bundles,
//! preparing a message for the tiers, asking for queue depths, and routing.

use super::publisher::PublishError;
use super::tiers::TierError;
use std::time::Duration;

/// A failure of the RabbitMQ transport.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RabbitError {
    /// The broker refused, or the connection or channel failed.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// `delay.engine = "rabbitmq-plugin"` without the plugin.
    #[error(
        "delay.engine = \"rabbitmq-plugin\" needs the rabbitmq_delayed_message_exchange plugin, which this \
         RabbitMQ does not have enabled ({0}); enable it (rabbitmq-plugins enable \
         rabbitmq_delayed_message_exchange) or use delay.engine = \"rabbitmq\" (no plugin needed)"
    )]
    PluginMissing(lapin::Error),
    /// No node of the cluster accepted a connection.
    #[error(transparent)]
    Connect(#[from] super::connect::ConnectError),
    /// A publisher could not be set up (confirms refused).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A delay the tiers cannot carry.
    #[error(transparent)]
    Tier(#[from] TierError),
    /// A bundle that does not encode (a bug: payq builds them).
    #[error("cannot encode a bundle: {0}")]
    Encode(String),
    /// RabbitMQ did not answer within the time given.
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    /// The message has no route now.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Why a message has no route now; it is released and tried again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// What the route needs could not be read now.
    #[error("route unavailable: {0}")]
    Unavailable(String),
    /// The event the message delivers is not in the store.
    #[error("event {0} not found")]
    EventNotFound(String),
}
