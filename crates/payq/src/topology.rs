//! `payq topology print|declare`: the RabbitMQ exchanges, queues and bindings of the distributed mode (docs/operations.md).

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
        #[arg(long)]
        amqp_url: Option<String>,
    },
}

pub async fn run(command: TopologyCommand, configured_url: Option<&str>) -> anyhow::Result<ExitCode> {
    let topology = Topology::new("payq");
    match command {
        TopologyCommand::Print => {
            let mut lines: Vec<String> = topology.items().iter().map(ToString::to_string).collect();
            let t = &topology.tiers;
            for k in 0..t.levels {
                lines.push(format!(
                    "queue    {} (durable; x-queue-type=quorum, x-message-ttl={}, x-dead-letter-exchange={}, x-dead-letter-strategy=at-least-once, x-overflow=reject-publish)",
                    t.queue(k),
                    t.base.as_millis() << k,
                    if k == 0 { t.deliver_exchange() } else { t.exchange(k - 1) }
                ));
                lines.push(format!("binding  {} -> queue {} [digit {k} = 1]", t.exchange(k), t.queue(k)));
                let next = if k == 0 { t.deliver_exchange() } else { t.exchange(k - 1) };
                lines.push(format!("binding  {} -> exchange {next} [digit {k} = 0]", t.exchange(k)));
            }
            crate::ops::print_lines(&lines);
        }
        TopologyCommand::Declare { amqp_url } => {
            let url = amqp_url
                .or_else(|| configured_url.map(str::to_owned))
                .context("no RabbitMQ URL: set PAYQ_AMQP_URL or pass --amqp-url")?;
            let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .with_context(|| "connecting to RabbitMQ".to_string())?;
            let channel = conn.create_channel().await?;
            topology.declare(&channel).await?;
            println!(
                "declared {} exchanges and {} queues with their bindings",
                topology.exchanges().len(),
                topology.queues().len()
            );
            let _ = conn.close(200, "done".into()).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
