//! Declaring what the relay publishes to: the topology, and the delayed-message plugin's
//! exchange when it carries delays (`delay.engine = "rabbitmq-plugin"`).

use super::error::RabbitError;
use super::relay::DelayMode;
use super::topology::{Topology, WorkQueue};
use lapin::types::{AMQPValue, FieldTable, LongString};

/// The exchange of the delayed-message plugin.
pub fn plugin_exchange(topology: &Topology) -> String {
    format!("{}.delay.plugin", topology.prefix)
}

/// Declares the topology (idempotent), and the plugin's exchange when it carries delays.
pub async fn declare_all(conn: &lapin::Connection, topology: &Topology, mode: DelayMode) -> Result<(), RabbitError> {
    let channel = conn.create_channel().await?;
    topology.declare(&channel).await?;
    if mode == DelayMode::Plugin {
        declare_plugin_exchange(conn, topology).await?;
    }
    Ok(())
}

/// Declares the delayed-message exchange and binds the work queues to it. Fails with a
/// clear message when the `rabbitmq_delayed_message_exchange` plugin is not enabled.
pub async fn declare_plugin_exchange(conn: &lapin::Connection, topology: &Topology) -> Result<(), RabbitError> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
    let channel = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert("x-delayed-type".into(), AMQPValue::LongString(LongString::from("direct")));
    let name = plugin_exchange(topology);
    let declared = channel
        .exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            args,
        )
        .await;
    if let Err(e) = declared {
        return Err(RabbitError::PluginMissing(e));
    }
    for queue in WorkQueue::ALL {
        let q = topology.work_queue(queue);
        channel
            .queue_bind(
                q.as_str().into(),
                name.as_str().into(),
                q.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
