//! RabbitMQ (lapin): the topology payq declares ([`topology`]), publishing with confirms
//! ([`publisher`]), delays inside RabbitMQ without a plugin ([`tiers`], carrying [`bundle`]s), and the transport
//! of the distributed mode: the outbox [`relay`] and the [`consumer`]s.

pub mod bundle;
pub mod connect;
pub mod consumer;
pub mod declare;
pub mod error;
pub mod gather;
pub mod publisher;
pub mod relay;
pub mod tiers;
pub mod topology;

pub use error::{RabbitError, RouteError};
