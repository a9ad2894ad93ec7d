//! The `bluetick` binary: parses the command line, sets up logging and signals, dispatches.

use anyhow::Context;
use bluetick::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// WhatsApp Business webhooks → Kafka → ClickHouse, keeping masked delivery metadata only.
///
/// Configuration comes from a TOML file (--config; see bluetick.example.toml) and from
/// environment variables, which win: BLUETICK_<SECTION>_<KEY> for every key (for example
/// BLUETICK_KAFKA_BROKERS), plus BLUETICK_LISTEN, BLUETICK_APP_SECRET,
/// BLUETICK_APP_SECRET_PREVIOUS, BLUETICK_VERIFY_TOKEN, BLUETICK_PEPPER and BLUETICK_PEPPER_FILE.
#[derive(Parser)]
#[command(name = "bluetick", version, verbatim_doc_comment)]
struct Cli {
    /// TOML config file.
    #[arg(
        long,
        short,
        global = true,
        env = "BLUETICK_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive Meta's webhooks: verify X-Hub-Signature-256, drop content, mask phone numbers,
    /// produce one event per status/message/update to Kafka, answer 200 once the broker acked.
    ///
    /// Routes: GET/POST /webhook, GET /metrics, GET /healthz, GET /readyz.
    Ingest {
        /// Address to listen on (overrides ingest.listen / BLUETICK_LISTEN).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Move events from Kafka into ClickHouse: batches by rows, bytes or age, inserts with
    /// RowBinary, commits offsets only after the rows are stored.
    ///
    /// ClickHouse down → the batch is retried with backoff and nothing is committed; records
    /// ClickHouse refuses for their content, or that do not decode, go to the dead-letter
    /// topic with the reason. Rows already past their table's retention are skipped.
    /// Serves GET /metrics and GET /healthz on sink.listen.
    Sink {
        /// Address of /metrics and /healthz (overrides sink.listen).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Drop day partitions older than each table's retention ([retention] in the config:
    /// status, inbound and account data 90 days, security events 180 by default).
    ///
    /// Prints each partition it drops and a summary. Safe to run from cron at any time.
    Retention {
        /// Print what would be dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create or update the ClickHouse schema (database, tables, views) from the versioned
    /// files in schemas/clickhouse/, and create the Kafka topics.
    ///
    /// Safe to run repeatedly: applied files are recorded with their SHA-256 in
    /// schema_migrations and skipped; a recorded file whose contents changed is refused.
    Migrate {
        /// Only the ClickHouse schema; leave Kafka alone.
        #[arg(long)]
        skip_kafka: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bluetick: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLUETICK_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Ingest { listen } => {
                if let Some(listen) = listen {
                    cfg.ingest.listen = listen;
                }
                cfg.check_ingest()?;
                let listener = tokio::net::TcpListener::bind(&cfg.ingest.listen)
                    .await
                    .with_context(|| format!("binding {}", cfg.ingest.listen))?;
                bluetick::ingest::run(&cfg, listener, shutdown_signal()).await?;
            }
            Command::Sink { listen } => {
                if let Some(listen) = listen {
                    cfg.sink.listen = listen;
                }
                let listener = tokio::net::TcpListener::bind(&cfg.sink.listen)
                    .await
                    .with_context(|| format!("binding {}", cfg.sink.listen))?;
                bluetick::sink::run(&cfg, listener, shutdown_signal()).await?;
            }
            Command::Retention { dry_run } => {
                bluetick::retention::run(&cfg, dry_run, &mut std::io::stdout()).await?;
            }
            Command::Migrate { skip_kafka } => {
                let mut out = std::io::stdout();
                bluetick::migrate::run(&cfg, &mut out).await?;
                if !skip_kafka {
                    bluetick::migrate::topics(&cfg, &mut out).await?;
                }
            }
        }
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
