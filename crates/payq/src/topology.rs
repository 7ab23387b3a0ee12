//! `payq topology print|declare|delete`: the RabbitMQ exchanges, queues and bindings of the
//! distributed mode (docs/operations.md).

use anyhow::Context;
use clap::Subcommand;
use payq_bus::rabbit::topology::Topology;
use std::process::ExitCode;

/// `payq topology …`
#[derive(Subcommand)]
pub enum TopologyCommand {
    /// List every exchange, queue (with its arguments) and binding.
    Print,
    /// Declare them on RabbitMQ (idempotent): PAYQ_AMQP_URL, or --amqp-url.
    Declare {
        /// The broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (default: PAYQ_AMQP_URL).
        #[arg(long)]
        amqp_url: Option<String>,
    },
    /// Delete them from RabbitMQ, with the messages in the queues (a prefix's test or
    /// benchmark topology; never a live one): PAYQ_AMQP_URL, or --amqp-url.
    Delete {
        /// The broker, e.g. amqp://guest:guest@127.0.0.1:5672/%2f (default: PAYQ_AMQP_URL).
        #[arg(long)]
        amqp_url: Option<String>,
        /// Confirms that the queues' messages may go.
        #[arg(long)]
        yes: bool,
    },
}

/// A connection to the broker `amqp_url` names, or the configured one.
async fn connect(amqp_url: Option<String>, configured_url: Option<&str>) -> anyhow::Result<lapin::Connection> {
    let url = amqp_url
        .or_else(|| configured_url.map(str::to_owned))
        .context("no RabbitMQ URL: set PAYQ_AMQP_URL or pass --amqp-url")?;
    let (conn, _) = payq_bus::rabbit::connect::connect_first(&url, 0)
        .await
        .with_context(|| "connecting to RabbitMQ".to_string())?;
    Ok(conn)
}

/// Runs `payq topology …` on the topology the settings name (prefix, tier queue type).
pub async fn run(
    command: TopologyCommand,
    topology: Topology,
    configured_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match command {
        TopologyCommand::Print => {
            let mut lines: Vec<String> = topology.items().iter().map(ToString::to_string).collect();
            let t = &topology.tiers;
            for x in t.headers_exchanges() {
                lines.push(format!("exchange {x} (headers)"));
            }
            for k in 0..t.levels {
                let arguments: Vec<String> =
                    t.queue_arguments(k).iter().map(|(name, value)| format!("{name}={}", amqp_text(value))).collect();
                lines.push(format!("queue    {} (durable; {})", t.queue(k), arguments.join(", ")));
            }
            lines.push(format!("queue    {} (durable; x-queue-type={})", t.fired_queue(), t.queue_type.as_str()));
            lines.push(format!("binding  {} -> queue {} [{}]", t.deliver_exchange(), t.fired_queue(), t.fired_queue()));
            for (source, destination, header, value, to_exchange) in t.bindings() {
                let kind = if to_exchange { "exchange" } else { "queue" };
                lines.push(format!("binding  {source} -> {kind} {destination} [{header} = {value}]"));
            }
            crate::ops::print_lines(&lines);
        }
        TopologyCommand::Declare { amqp_url } => {
            let conn = connect(amqp_url, configured_url).await?;
            let channel = conn.create_channel().await?;
            topology.declare(&channel).await?;
            println!(
                "declared {} exchanges and {} queues with their bindings",
                topology.exchanges().len(),
                topology.queues().len()
            );
            let _ = conn.close(200, "done".into()).await;
        }
        TopologyCommand::Delete { amqp_url, yes } => {
            if !yes {
                anyhow::bail!(
                    "this deletes the {} queues of prefix {:?} with their messages; pass --yes to go ahead",
                    topology.queues().len(),
                    topology.prefix
                );
            }
            let conn = connect(amqp_url, configured_url).await?;
            let channel = conn.create_channel().await?;
            // Deleting what is not there succeeds: a half-deleted topology can be deleted again.
            for q in topology.queues() {
                channel.queue_delete(q.as_str().into(), Default::default()).await?;
            }
            for x in topology.exchanges() {
                channel.exchange_delete(x.as_str().into(), Default::default()).await?;
            }
            println!("deleted {} exchanges and {} queues", topology.exchanges().len(), topology.queues().len());
            let _ = conn.close(200, "done".into()).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A queue argument's value as `payq topology print` shows it.
fn amqp_text(value: &lapin::types::AMQPValue) -> String {
    match value {
        lapin::types::AMQPValue::LongString(s) => s.to_string(),
        lapin::types::AMQPValue::LongLongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}
