//! RabbitMQ (lapin): the topology payq declares and delays inside RabbitMQ without a
//! plugin ([`tiers`]).

pub mod tiers;
