//! Operator commands that work on the database directly: merchants, verify, dead letters,
//! timers.

use anyhow::Context;
use clap::Subcommand;
use payq_app::Settings;
use payq_app::usecases::CreateMerchant;
use payq_domain::{DeadLetterId, Timestamp};
use payq_store::Store;
use std::process::ExitCode;

/// `payq merchant …`
#[derive(Subcommand)]
pub enum MerchantCommand {
    /// Create a merchant and print it with its API key and webhook secret.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

/// `payq dlq …`
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one dead letter with its payload and last error.
    Show { id: String },
    /// Put a dead letter back in the queue, due now.
    Replay { id: String },
    /// Delete every dead letter.
    Purge,
}

/// `payq timers …`
#[derive(Subcommand)]
pub enum TimersCommand {
    /// List pending timers and messages, soonest first.
    List {
        /// Only messages of this kind (payment.timeout, order.check, webhook.deliver, …).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many, soonest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Pending counts by kind and due-time bucket, and the most overdue.
    Stats,
}

/// Opens an existing store. These commands inspect a database that payq already runs on:
/// a SQLite path that does not exist is a mistake (a typo, another working directory) and
/// is reported, never created empty and then found healthy.
async fn open(settings: &Settings) -> anyhow::Result<Store> {
    if let Some(file) = payq_store::sqlite_file(&settings.database_url)
        && !file.exists()
    {
        anyhow::bail!(
            "no payq database at {} (set --database-url or PAYQ_DATABASE_URL to the database payq serve uses)",
            file.display()
        );
    }
    Store::open(&settings.database_url)
        .await
        .with_context(|| format!("opening {}", payq_store::redact_url(&settings.database_url)))
}

/// Prints lines to stdout, stopping quietly if the reader went away (`payq … | head`).
pub fn print_lines(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    print_lines(&[serde_json::to_string_pretty(v)?]);
    Ok(())
}

pub async fn merchant(settings: Settings, command: MerchantCommand) -> anyhow::Result<ExitCode> {
    let MerchantCommand::Create { name, webhook_url } = command;
    let store = open(&settings).await?;
    let created = payq_app::usecases::create_merchant(
        &store,
        CreateMerchant { name, webhook_url, webhook_events: None, settings: Default::default() },
        settings.webhook.allow_private,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    print_json(&created)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(settings: Settings) -> anyhow::Result<ExitCode> {
    let store = open(&settings).await?;
    let violations = store.verify().await?;
    if violations.is_empty() {
        println!("payq verify: all invariants hold");
        return Ok(ExitCode::SUCCESS);
    }
    let lines: Vec<String> =
        violations.iter().map(|v| format!("VIOLATION {}: {}: {}", v.invariant, v.subject, v.detail)).collect();
    print_lines(&lines);
    println!("payq verify: {} violation(s)", violations.len());
    Ok(ExitCode::from(1))
}

pub async fn dlq(settings: Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let store = open(&settings).await?;
    match command {
        DlqCommand::List { limit } => {
            let lines: Vec<String> = store
                .dead_letters(limit)
                .await?
                .iter()
                .map(|d| format!("{}  {}  attempts={}  {}  {}", d.id, d.kind, d.attempts, d.created_at, d.last_error))
                .collect();
            if lines.is_empty() {
                println!("no dead letters");
            }
            print_lines(&lines);
        }
        DlqCommand::Show { id } => {
            let id: DeadLetterId = id.parse()?;
            print_json(&store.dead_letter(&id).await?)?;
        }
        DlqCommand::Replay { id } => {
            let id: DeadLetterId = id.parse()?;
            let msg = store.replay_dead_letter(&id).await?;
            println!("replayed {id} as {msg}");
        }
        DlqCommand::Purge => println!("purged {} dead letter(s)", store.purge_dead_letters().await?),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn timers(settings: Settings, command: TimersCommand) -> anyhow::Result<ExitCode> {
    let store = open(&settings).await?;
    match command {
        TimersCommand::List { kind, limit } => {
            if let Some(kind) = kind.as_deref()
                && payq_app::jobs::JobKind::parse(kind).is_none()
            {
                let known: Vec<&str> = payq_app::jobs::JobKind::ALL.iter().map(|k| k.as_str()).collect();
                anyhow::bail!("unknown kind {kind:?} in --kind; kinds: {}", known.join(", "));
            }
            let lines: Vec<String> = store
                .pending_messages(kind.as_deref(), limit)
                .await?
                .into_iter()
                .map(|m| {
                    let key = m.key.unwrap_or_default();
                    format!("{}  {:<20} due {}  key={key}  attempts={}", m.id, m.kind, m.due_at, m.attempts)
                })
                .collect();
            if lines.is_empty() {
                println!("no pending messages{}", kind.map(|k| format!(" of kind {k}")).unwrap_or_default());
            }
            print_lines(&lines);
        }
        TimersCommand::Stats => print_json(&store.message_stats(Timestamp::now()).await?)?,
    }
    Ok(ExitCode::SUCCESS)
}
