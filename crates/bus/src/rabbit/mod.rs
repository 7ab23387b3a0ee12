//! RabbitMQ (lapin): the topology payq declares ([`topology`]), publishing with confirms
//! ([`publisher`]), and delays inside RabbitMQ without a plugin ([`tiers`]).

pub mod publisher;
pub mod tiers;
pub mod topology;
