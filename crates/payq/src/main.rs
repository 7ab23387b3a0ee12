//! `payq`: the one binary. Parses the command line, loads the settings, and hands over to
//! the command; `serve` builds an [`payq_app::Application`] and runs it until a signal.

mod bench;
mod demo;
mod demo_channels;
mod load;
mod ops;
mod signals;
mod topology;

use anyhow::Context;
use clap::{Parser, Subcommand};
use payq_app::Settings;
use payq_app::config::LogFormat;
use payq_app::telemetry;
use signals::shutdown_on_signal;
use std::path::PathBuf;
use std::process::ExitCode;

/// payq: payment orders, payments and refunds, with their time-driven follow-up.
#[derive(Parser)]
#[command(name = "payq", version, about)]
struct Cli {
    /// Configuration file (default: payq.toml if present, or PAYQ_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The database of the commands that work on one (and only those offer the flag).
#[derive(clap::Args, Clone, Default)]
struct DatabaseArg {
    /// Database URL, e.g. sqlite://payq-data/payq.db (PAYQ_DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run the workers.
    Serve {
        /// Address to listen on (PAYQ_LISTEN).
        #[arg(long)]
        listen: Option<String>,
        /// api, worker or all (PAYQ_ROLE).
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Run database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Merchants.
    Merchant {
        #[command(subcommand)]
        command: ops::MerchantCommand,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Check payq's invariants (docs/operations.md) on the database; exits 1 if any is broken.
    Verify {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Reconcile one merchant's channel for one day against the channel's bill now, and
    /// print the run and its discrepancies (docs/operations.md, "Reconciliation").
    Reconcile {
        /// The merchant (`mch_…`).
        #[arg(long)]
        merchant: String,
        /// `alipay` or `wechatpay`.
        #[arg(long)]
        channel: String,
        /// The bill date, `YYYY-MM-DD`.
        #[arg(long)]
        date: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Dead letters.
    Dlq {
        #[command(subcommand)]
        command: ops::DlqCommand,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Pending timers and messages.
    Timers {
        #[command(subcommand)]
        command: ops::TimersCommand,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Drive a realistic scenario (in-process, or against --url) and print what happened.
    Demo(demo::DemoArgs),
    /// RabbitMQ topology: list it, or declare it idempotently.
    Topology {
        #[command(subcommand)]
        command: topology::TopologyCommand,
    },
    /// Load generator: creates orders against a running payq and reports throughput and latency.
    Load(load::LoadArgs),
    /// Benchmarks: payq's delay engines against their peers, in one run.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("payq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut flags: Vec<(&str, String)> = Vec::new();
    let db = match &cli.command {
        Command::Serve { db, .. }
        | Command::Migrate { db }
        | Command::Merchant { db, .. }
        | Command::Verify { db }
        | Command::Reconcile { db, .. }
        | Command::Dlq { db, .. }
        | Command::Timers { db, .. } => db.database_url.clone(),
        Command::Demo(_) | Command::Topology { .. } | Command::Load(_) | Command::Bench { .. } => None,
    };
    if let Some(url) = db {
        flags.push(("database_url", url));
    }
    if let Command::Serve { listen, role, .. } = &cli.command {
        if let Some(l) = listen {
            flags.push(("listen", l.clone()));
        }
        if let Some(r) = role {
            flags.push(("role", r.clone()));
        }
    }
    let settings = Settings::load(cli.config, &flags)?;
    // The demo prints a story, bench and load their tables; the routine logs of their
    // in-process servers and engines would drown them (PAYQ_LOG still overrides).
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Bench { .. } | Command::Load(_))
        && std::env::var_os("PAYQ_LOG").is_none();
    telemetry::init_logs(if quiet { "warn" } else { &settings.log }, settings.log_format);
    match cli.command {
        Command::Serve { .. } => serve(settings).await,
        Command::Migrate { .. } => {
            payq_store::Store::open(&settings.database_url).await.context("migrating")?;
            println!("migrations applied to {}", payq_store::redact_url(&settings.database_url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Merchant { command, .. } => ops::merchant(settings, command).await,
        Command::Verify { .. } => ops::verify(settings).await,
        Command::Reconcile { merchant, channel, date, .. } => {
            ops::reconcile(settings, &merchant, &channel, &date).await
        }
        Command::Dlq { command, .. } => ops::dlq(settings, command).await,
        Command::Timers { command, .. } => ops::timers(settings, command).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Topology { command } => {
            topology::run(command, payq_app::application::topology(&settings), settings.amqp_url.as_deref()).await
        }
        Command::Load(args) => load::run(args).await,
        Command::Bench { command } => bench::run(command).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let app = payq_app::Application::build(settings.clone()).await?;
    let addr = app.local_addr();
    let database = payq_store::redact_url(&settings.database_url);
    match settings.log_format {
        // Every line is a JSON log line: the start-up lines too.
        LogFormat::Json => {
            if app.admin_token_generated() {
                tracing::warn!(admin_token = app.admin_token(), "no PAYQ_ADMIN_TOKEN set; admin token for this run");
            }
            tracing::info!(listen = %format_args!("http://{addr}"), %database, role = ?settings.role, "payq started");
        }
        LogFormat::Text => {
            if app.admin_token_generated() {
                println!("payq: no PAYQ_ADMIN_TOKEN set; admin token for this run: {}", app.admin_token());
            }
            println!("payq: listening on http://{addr} (database {database}, role {:?})", settings.role);
            tracing::info!(%addr, "payq started");
        }
    }
    app.run_until_stopped(shutdown_on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "payq", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    /// `--database-url` is offered only where a command works on the database.
    #[test]
    fn the_database_flag_is_offered_only_where_it_applies() {
        let cli = Cli::command();
        let offers = |name: &str| {
            cli.find_subcommand(name).is_some_and(|c| c.get_arguments().any(|a| a.get_id() == "database_url"))
        };
        for name in ["serve", "migrate", "merchant", "verify", "dlq", "timers"] {
            assert!(offers(name), "{name} needs --database-url");
        }
        for name in ["demo", "topology", "load", "bench"] {
            assert!(!offers(name), "{name} has no database to point at");
        }
    }
}
