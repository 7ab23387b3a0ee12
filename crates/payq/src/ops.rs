//! Operator commands that work on the database directly: merchants, verify, dead letters,
//! timers.

use anyhow::Context;
use clap::Subcommand;
use payq_app::Settings;
use payq_app::usecases::CreateMerchant;
use payq_domain::{BillChannel, BillDate, DeadLetterId, MerchantId, RunStatus, Timestamp};
use payq_store::Store;
use std::process::ExitCode;

/// `payq merchant …`
#[derive(Subcommand)]
pub enum MerchantCommand {
    /// Create a merchant and print it with its API key and webhook secret.
    Create {
        /// The merchant's name.
        #[arg(long)]
        name: String,
        /// Where its events are POSTed (http/https; see docs/security.md for the URL policy).
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

/// `payq dlq …`
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one dead letter with its payload and last error.
    Show {
        /// The dead letter's id (dlq_…).
        id: String,
    },
    /// Put a dead letter back in the queue, due now.
    Replay {
        /// The dead letter's id (dlq_…).
        id: String,
    },
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

/// A table with `headers`, drawn in plain ASCII (it survives pipes and log files).
fn table(headers: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_MARKDOWN).set_header(headers.to_vec());
    table
}

/// `payq timers stats` as tables: pending by kind, by due time, and the engine's totals.
fn stats_tables(stats: &payq_store::MessageStats) -> Vec<String> {
    let pairs = |headers: &[&str], rows: &[(String, i64)]| {
        let mut t = table(headers);
        for (name, n) in rows {
            t.add_row(vec![name.clone(), n.to_string()]);
        }
        t.to_string()
    };
    let overdue = stats.oldest_overdue_ms.map_or("none".to_owned(), |ms| format!("{ms} ms"));
    vec![
        format!("pending: {}   dead letters: {}   most overdue: {overdue}\n", stats.pending_total, stats.dead_letters),
        pairs(&["kind", "pending"], &stats.pending_by_kind),
        String::new(),
        pairs(&["due", "pending"], &stats.pending_by_due),
        String::new(),
        pairs(&["engine total", "count"], &stats.counters),
    ]
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

/// `payq reconcile`: runs one reconciliation in this process (a run that exists is run
/// again, its result replaced) and prints it; exits 1 when it failed or found discrepancies.
pub async fn reconcile(settings: Settings, merchant: &str, channel: &str, date: &str) -> anyhow::Result<ExitCode> {
    let merchant: MerchantId = merchant.parse().context("--merchant")?;
    let channel = BillChannel::parse(channel).context("--channel must be alipay or wechatpay")?;
    let date: BillDate = date.parse().context("--date")?;
    let store = open(&settings).await?;
    let sim = payq_channels::sim::SimChannel::new(
        store.clone(),
        payq_domain::crypto::random_hex(16),
        settings.sim.callback_delay,
    )?;
    let payq = payq_app::usecases::Payq::new(
        store,
        std::sync::Arc::new(payq_channels::sim::Sim(sim)),
        std::sync::Arc::new(settings),
    );
    let run = payq.start_reconciliation(&merchant, channel, date).await?;
    payq.run_reconciliation(&run.id, run.generation).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = payq.reconciliation_run(&run.id).await?;
    let mut summary = table(&[
        "run",
        "channel",
        "bill date",
        "status",
        "matched",
        "missing in payq",
        "missing at channel",
        "amount mismatch",
        "status mismatch",
        "channel amount",
        "payq amount",
        "refunds",
        "fees",
    ]);
    let c = run.counts;
    let t = run.totals;
    summary.add_row(vec![
        run.id.to_string(),
        run.channel.to_string(),
        run.bill_date.to_string(),
        run.status.as_str().to_owned(),
        c.matched.to_string(),
        c.missing_in_payq.to_string(),
        c.missing_at_channel.to_string(),
        c.amount_mismatch.to_string(),
        c.status_mismatch.to_string(),
        t.channel_amount.to_string(),
        t.payq_amount.to_string(),
        t.refunds.to_string(),
        t.fees.to_string(),
    ]);
    println!("{summary}");
    if let Some(error) = &run.error {
        println!("error: {error}");
    }
    let found = payq.discrepancies(&run.id).await?;
    if !found.is_empty() {
        let mut list = table(&[
            "discrepancy",
            "kind",
            "order no",
            "payment",
            "refund",
            "payq",
            "channel",
            "payq status",
            "channel status",
        ]);
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let amount = |v: Option<i64>| v.map(|a| a.to_string()).unwrap_or_default();
        for d in &found {
            list.add_row(vec![
                d.id.to_string(),
                d.kind.as_str().to_owned(),
                text(&d.merchant_order_no),
                d.payment_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                d.refund_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                amount(d.payq_amount),
                amount(d.channel_amount),
                text(&d.payq_status),
                text(&d.channel_status),
            ]);
        }
        println!("{list}");
    }
    let clean = run.status == RunStatus::Completed && found.is_empty();
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn dlq(settings: Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let store = open(&settings).await?;
    match command {
        DlqCommand::List { limit } => {
            let dead = store.dead_letters(limit).await?;
            if dead.is_empty() {
                println!("no dead letters");
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = table(&["dead letter", "kind", "key", "attempts", "dead-lettered", "last error"]);
            for d in &dead {
                table.add_row(vec![
                    d.id.to_string(),
                    d.kind.clone(),
                    d.key.clone().unwrap_or_default(),
                    d.attempts.to_string(),
                    d.created_at.to_string(),
                    d.last_error.clone(),
                ]);
            }
            print_lines(&[table.to_string()]);
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
            let pending = store.pending_messages(kind.as_deref(), limit).await?;
            if pending.is_empty() {
                println!("no pending messages{}", kind.map(|k| format!(" of kind {k}")).unwrap_or_default());
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = table(&["message", "kind", "due", "key", "attempts", "last error"]);
            for m in pending {
                table.add_row(vec![
                    m.id,
                    m.kind,
                    m.due_at.to_string(),
                    m.key.unwrap_or_default(),
                    m.attempts.to_string(),
                    m.last_error.unwrap_or_default(),
                ]);
            }
            print_lines(&[table.to_string()]);
        }
        TimersCommand::Stats => print_lines(&stats_tables(&store.message_stats(Timestamp::now()).await?)),
    }
    Ok(ExitCode::SUCCESS)
}
