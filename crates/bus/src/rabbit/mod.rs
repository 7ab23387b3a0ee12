//! RabbitMQ (lapin): the topology payq declares ([`topology`]) and delays inside RabbitMQ
//! without a plugin ([`tiers`]).

pub mod tiers;
pub mod topology;
