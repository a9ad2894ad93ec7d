//! The `bluetick` binary: parses the command line, sets up logging and signals, dispatches.

use anyhow::Context;
use bluetick::config::Config;
use bluetick::metrics as m;
use bluetick::pushgateway::Job;
use clap::{Parser, Subcommand};
use std::io::Write;
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
        #[arg(long, conflicts_with = "report")]
        dry_run: bool,
        /// Print the policy (days and basis per table) and whether each table complies today;
        /// drop nothing. Exits non-zero if a table holds data past its retention.
        #[arg(long)]
        report: bool,
    },
    /// Erase everything held about people (DPDP Act / GDPR erasure): finds their rows under
    /// every identifier (keyed hashes of numbers and user ids, and those linked to them) in
    /// every table that holds people, records the erasure in erasure_audit (hashes only),
    /// deletes the rows, waits until ClickHouse has, and verifies none remain. From then on
    /// sinks drop that person's events older than the erasure, whatever they read.
    ///
    /// Idempotent: running it again removes nothing more and audits that. Exits non-zero,
    /// saying what was and was not erased, if any table could not be. Events still in Kafka
    /// (masked, hashed) expire with the topics' retention.ms; until then a sink that reads
    /// them drops them.
    Erase {
        #[command(flatten)]
        people: People,
        /// How long to wait for ClickHouse to finish deleting, per table.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout_secs: u64,
        /// After deleting, how long to wait for rows a sink already had in hand before
        /// counting once more (and deleting them too). A little over sink.batch_max_age_ms
        /// plus one insert.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        settle_secs: u64,
    },
    /// Export everything held about people, as JSON Lines (default) or CSV
    /// (schemas/export.v1.schema.json). Progress goes to stderr.
    Export {
        #[command(flatten)]
        people: People,
        /// Export every row of one client business instead of a person's (the label of the
        /// tenant map): what a BSP hands a client that leaves it. JSON Lines only.
        #[arg(long, value_name = "LABEL", conflicts_with_all = ["phones", "user_ids", "hashes", "from_file", "stdin"])]
        tenant: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: bluetick::export::Format,
        /// Write to FILE instead of stdout. The file is created readable by its owner only
        /// (0600); an existing file is refused unless --force.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Overwrite FILE if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Load the rate card (price of a billable message per market and pricing category, from
    /// a date on) for the estimated spend. The CSV is the whole card and replaces the previous
    /// one; every line is checked first. See deploy/rate-card.example.csv (made-up prices).
    RateCard {
        #[command(subcommand)]
        action: RateCardAction,
    },
    /// Recount the daily aggregates the dashboards read, for a range of days: after upgrading
    /// to a release that adds them (to fill the days already stored), or when the sinks'
    /// rollup is off (sink.rollup_interval_ms = 0). Exact counts from each day's rows; safe to
    /// run at any time and repeatedly.
    Rollup {
        /// The last N days up to today (UTC).
        #[arg(long, default_value_t = 8, value_name = "N", conflicts_with = "from")]
        days: u64,
        /// First day, YYYY-MM-DD (with --to).
        #[arg(long, value_name = "DATE", requires = "to")]
        from: Option<String>,
        /// Last day, YYYY-MM-DD.
        #[arg(long, value_name = "DATE", requires = "from")]
        to: Option<String>,
    },
    /// Send the sink's dead letters back to be stored, after the cause is fixed (a schema, a
    /// ClickHouse rule, a sink too old for an event version).
    ///
    /// Without --apply it only counts what it would replay, per table and reason. With
    /// --apply each selected event goes back to the topic it came from, the sink stores it
    /// under its usual rules (retention, erasures), and the replay waits until the sink's
    /// group has committed past them, then counts those refused again (exit status 1 if
    /// any). Safe to repeat: event ids make copies one row. Skeletons of webhooks that could
    /// not be parsed are never replayable (the body was not kept).
    Replay {
        /// Replay; without it, nothing is written.
        #[arg(long)]
        apply: bool,
        /// Only dead letters whose reason contains TEXT (e.g. `throwIf`, `Code: 16`).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Only events of this table (message_status, inbound_message, account_event,
        /// security_event, or unknown for lines that do not decode).
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
        /// Only dead-lettered at or after: an RFC 3339 time (2026-11-30T10:00:00Z) or a span
        /// ago (2h, 7d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only dead-lettered before: as --since.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// How long to wait for the sink to commit past the replayed events.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        wait_secs: u64,
    },
    /// Check the privacy promise on the live data: every string column of every table, every
    /// topic bluetick creates, and the configuration.
    ///
    /// Finds phone numbers, ids that decode to one (raw wamids), user ids in clear, content
    /// where a code belongs (text longer than the column allows), rows past retention, rows of
    /// people erased after them, topics kept longer than the policy, and placeholder secrets.
    /// Prints a line per check and per finding (samples masked); exits non-zero on any finding.
    /// With --every it runs on a schedule and serves the findings per check on /metrics.
    Audit {
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: AuditFormat,
        /// Rows read per table (newest first); larger tables are sampled, and the report says so.
        #[arg(long, default_value_t = 1_000_000, value_name = "ROWS")]
        max_rows: u64,
        /// Records read per topic partition, from the earliest offset.
        #[arg(long, default_value_t = 10_000, value_name = "RECORDS")]
        max_records: u64,
        /// Run again every SECS seconds, serving bluetick_audit_findings on --listen's /metrics.
        #[arg(long, value_name = "SECS", requires = "listen")]
        every: Option<u64>,
        /// Address of /metrics and /healthz when scheduled.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Print the pseudonym bluetick stores for each of Meta's ids (wamid.…, wacid.…), to join
    /// bluetick's rows with a send log. Ids come as arguments or, without any, one per line
    /// on stdin.
    ///
    /// The computation, to do it in your own systems: the first 16 bytes of
    /// HMAC-SHA256(id key, the id exactly as Meta sent it), as 32 lower-case hex digits. The
    /// id key is privacy.id_key / BLUETICK_ID_KEY (not the pepper).
    MessageKey {
        /// Ids to key; none = read stdin.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// Print `id<TAB>key` instead of the key alone.
        #[arg(long)]
        with_id: bool,
    },
    /// Create or update the ClickHouse schema (database, tables, views) from the versioned
    /// files in schemas/clickhouse/, and create the Kafka topics.
    ///
    /// Safe to run repeatedly, and several at once: applied files are recorded with their
    /// SHA-256 in schema_migrations and skipped; a recorded file whose contents changed is
    /// refused.
    Migrate {
        /// Only the ClickHouse schema; leave Kafka alone.
        #[arg(long)]
        skip_kafka: bool,
        /// Change nothing: wait up to SECS until every migration this release knows is
        /// applied, then exit 0 (non-zero on timeout). Needs only read access: what an init
        /// container in front of the sink runs.
        #[arg(long, value_name = "SECS", conflicts_with = "skip_kafka")]
        wait_applied: Option<u64>,
    },
}

#[derive(Subcommand)]
enum RateCardAction {
    /// Check FILE and load it (country_code,pricing_category,effective_from,currency,price).
    Load {
        #[arg(value_name = "FILE")]
        file: String,
        /// Only check the file.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuditFormat {
    Text,
    Json,
}

/// Who `erase` and `export` are about. A person's rows are found under every identifier
/// Meta gave for them: rows that pair a given number with a user id (or the reverse) lead to
/// the rows that carry only the other.
#[derive(clap::Args)]
struct People {
    /// A phone number in any formatting (digits count), e.g. +91 98765 44321. Repeatable.
    #[arg(long = "phone", value_name = "NUMBER")]
    phones: Vec<String>,
    /// A business-scoped user id (or parent id) as Meta sends it, e.g. US.13491208655302741918.
    /// Repeatable.
    #[arg(long = "user-id", value_name = "BSUID")]
    user_ids: Vec<String>,
    /// A keyed hash as stored in person_hash, user_hash or parent_user_hash (64 hex digits).
    /// Repeatable.
    #[arg(long = "hash", value_name = "HEX")]
    hashes: Vec<String>,
    /// A file with one number, user id or hash per line (# comments allowed).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Read numbers, user ids or hashes from standard input, one per line: keeps them out of
    /// the process list and shell history.
    #[arg(long)]
    stdin: bool,
    /// Also search with the pepper before the last rotation (privacy.pepper_previous), for
    /// rows hashed before it.
    #[arg(long)]
    previous_pepper: bool,
}

impl People {
    fn hashes(&self, cfg: &Config) -> anyhow::Result<Vec<bluetick::privacy::PersonHash>> {
        use bluetick::privacy::{hashes_of, PersonRef};
        let mut refs = Vec::new();
        // Values are never echoed in errors: they are phone numbers.
        type Parse = fn(&str) -> Option<PersonRef>;
        let flags: [(&str, &[String], Parse); 3] = [
            ("--phone", &self.phones, PersonRef::phone),
            ("--user-id", &self.user_ids, PersonRef::user),
            ("--hash", &self.hashes, PersonRef::hash),
        ];
        for (flag, values, parse) in flags {
            for (i, v) in values.iter().enumerate() {
                let r = parse(v).with_context(|| {
                    format!("{flag} (occurrence {}) is not what the flag takes", i + 1)
                })?;
                refs.push(r);
            }
        }
        if let Some(path) = &self.from_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            refs.extend(PersonRef::parse_list(&path.display().to_string(), &text)?);
        }
        if self.stdin {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading standard input")?;
            refs.extend(PersonRef::parse_list("standard input", &text)?);
        }
        let key =
            |s: bluetick::config::Secret| bluetick::privacy::Pepper::new(s.expose().as_bytes());
        let current = key(cfg.pepper()?);
        let previous = if self.previous_pepper {
            Some(key(cfg.previous_pepper()?))
        } else {
            None
        };
        let mut peppers = vec![&current];
        peppers.extend(previous.as_ref());
        Ok(hashes_of(&refs, &peppers)?)
    }
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
    // Before the runtime's and librdkafka's threads exist (see `allocator`).
    if matches!(cli.command, Command::Sink { .. }) && !bluetick::allocator::keep_freed_memory() {
        tracing::warn!("allocator thresholds not set; the sink runs with the C library's defaults");
    }
    // Ingest runs its connections on single-threaded runtimes of its own (`ingest::workers`);
    // this one is the first of them.
    let mut runtime = match cli.command {
        Command::Ingest { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
            Command::Retention { dry_run, report } => {
                let mut out = std::io::stdout();
                if report {
                    let tables = bluetick::retention::report(&cfg, &mut out).await?;
                    let late: Vec<&str> = tables
                        .iter()
                        .filter(|t| !t.complies)
                        .map(|t| t.table)
                        .collect();
                    if !late.is_empty() {
                        anyhow::bail!(
                            "not compliant today: {} hold data past retention",
                            late.join(", ")
                        );
                    }
                } else {
                    let work =
                        async { Ok(bluetick::retention::run(&cfg, dry_run, &mut out).await?) };
                    reported(&cfg, Job::Retention, !dry_run, work, |o| {
                        vec![(
                            m::RETENTION_PARTITIONS_DROPPED,
                            "Partitions the last successful run dropped.",
                            o.dropped.len() as f64,
                        )]
                    })
                    .await?;
                }
            }
            Command::Erase {
                people,
                timeout_secs,
                settle_secs,
            } => {
                let hashes = people.hashes(&cfg)?;
                let waits = bluetick::erase::Waits {
                    mutation: std::time::Duration::from_secs(timeout_secs),
                    settle: std::time::Duration::from_secs(settle_secs),
                };
                let work = async {
                    Ok(bluetick::erase::run(&cfg, &hashes, waits, &mut std::io::stdout()).await?)
                };
                reported(&cfg, Job::Erase, true, work, |r| {
                    vec![(
                        m::ERASE_ROWS_REMOVED,
                        "Rows the last successful erasure removed.",
                        r.removed.values().sum::<u64>() as f64,
                    )]
                })
                .await?;
            }
            Command::Export {
                people,
                tenant,
                format,
                out,
                force,
            } => {
                if tenant.is_some() {
                    anyhow::ensure!(
                        format == bluetick::export::Format::Jsonl,
                        "--tenant exports JSON Lines only (--format jsonl)"
                    );
                }
                let hashes = match tenant {
                    Some(_) => Vec::new(),
                    None => people.hashes(&cfg)?,
                };
                let mut data: Box<dyn std::io::Write> = match &out {
                    Some(path) => Box::new(std::io::BufWriter::new(private_file(path, force)?)),
                    None => Box::new(std::io::stdout().lock()),
                };
                if let Some(tenant) = tenant {
                    let work = async {
                        Ok(bluetick::export::run_tenant(
                            &cfg,
                            &tenant,
                            &mut data,
                            &mut std::io::stderr(),
                        )
                        .await?)
                    };
                    reported(&cfg, Job::Export, true, work, |summary| {
                        vec![(
                            m::EXPORT_ROWS,
                            "Rows the last successful export wrote.",
                            summary.values().sum::<u64>() as f64,
                        )]
                    })
                    .await?;
                    return Ok(());
                }
                let work = async {
                    Ok(bluetick::export::run(
                        &cfg,
                        &hashes,
                        format,
                        &mut data,
                        &mut std::io::stderr(),
                    )
                    .await?)
                };
                reported(&cfg, Job::Export, true, work, |summary| {
                    vec![(
                        m::EXPORT_ROWS,
                        "Rows the last successful export wrote.",
                        summary.values().sum::<u64>() as f64,
                    )]
                })
                .await?;
            }
            Command::Audit {
                format,
                max_rows,
                max_records,
                every,
                listen,
            } => {
                let limits = bluetick::audit::Limits {
                    max_rows,
                    max_records,
                };
                match (every, listen) {
                    (Some(secs), Some(listen)) => audit_every(&cfg, limits, secs, &listen).await?,
                    _ => {
                        let report =
                            bluetick::audit::run(&cfg, limits, &mut std::io::stderr()).await?;
                        let mut out = std::io::stdout().lock();
                        match format {
                            AuditFormat::Text => report.write_text(&mut out)?,
                            AuditFormat::Json => {
                                serde_json::to_writer_pretty(&mut out, &report)?;
                                writeln!(out)?;
                            }
                        }
                        if !report.is_clean() {
                            anyhow::bail!(
                                "the privacy promise does not hold in {} places",
                                report.findings.len()
                            );
                        }
                    }
                }
            }
            Command::MessageKey { ids, with_id } => {
                let key = bluetick::privacy::IdKey::new(cfg.id_key()?.expose().as_bytes());
                let output = if with_id {
                    bluetick::message_key::Output::Pair
                } else {
                    bluetick::message_key::Output::Key
                };
                let n = bluetick::message_key::run(
                    &key,
                    &ids,
                    &mut std::io::stdin().lock(),
                    output,
                    &mut std::io::stdout().lock(),
                )?;
                eprintln!("message-key: {n} ids keyed");
            }
            Command::RateCard {
                action: RateCardAction::Load { file, dry_run },
            } => {
                bluetick::rate_card::run(&cfg, &file, dry_run, &mut std::io::stdout()).await?;
            }
            Command::Rollup { days, from, to } => {
                let today = bluetick::clock::now_secs() / 86_400;
                let (first, last) = match (from, to) {
                    (Some(f), Some(t)) => (day_of_date("--from", &f)?, day_of_date("--to", &t)?),
                    _ => (today + 1 - days.clamp(1, 3650), today),
                };
                anyhow::ensure!(first <= last, "--from is after --to");
                let ch = bluetick::clickhouse::ClickHouse::new(&cfg.clickhouse)?;
                let mut out = std::io::stdout();
                let n = bluetick::rollup::range(&ch, first, last, &mut out).await?;
                writeln!(
                    out,
                    "rollup: {n} table days recounted ({} days)",
                    last - first + 1
                )?;
            }
            Command::Replay {
                apply,
                reason,
                table,
                since,
                until,
                wait_secs,
            } => {
                if let Some(t) = &table {
                    let known = bluetick::model::Table::from_name(t).is_some() || t == "unknown";
                    anyhow::ensure!(
                        known,
                        "--table {t}: not one of bluetick's tables (or `unknown`)"
                    );
                }
                let opts = bluetick::replay::Options {
                    filter: bluetick::replay::Filter {
                        reason,
                        table,
                        since_ms: since
                            .as_deref()
                            .map(|w| when_ms("--since", w))
                            .transpose()?,
                        until_ms: until
                            .as_deref()
                            .map(|w| when_ms("--until", w))
                            .transpose()?,
                    },
                    apply,
                    wait: std::time::Duration::from_secs(wait_secs),
                };
                let summary = bluetick::replay::run(&cfg, &opts, &mut std::io::stdout()).await?;
                if apply && summary.failing_total() > 0 {
                    anyhow::bail!(
                        "{} replayed events were refused again: fix the cause and replay once more",
                        summary.failing_total()
                    );
                }
                if apply && summary.replayed > 0 && !summary.settled {
                    anyhow::bail!(
                        "the sink did not commit past the replayed events within {wait_secs} s; \
                         is it running (group {})?",
                        cfg.sink.group_id
                    );
                }
            }
            Command::Migrate {
                wait_applied: Some(secs),
                ..
            } => {
                let timeout = std::time::Duration::from_secs(secs);
                bluetick::migrate::wait_applied(&cfg, timeout, &mut std::io::stdout()).await?;
            }
            Command::Migrate { skip_kafka, .. } => {
                let work = async {
                    let mut out = std::io::stdout();
                    let applied = bluetick::migrate::run(&cfg, &mut out).await?;
                    if !skip_kafka {
                        bluetick::migrate::topics(&cfg, &mut out).await?;
                    }
                    Ok(applied)
                };
                reported(&cfg, Job::Migrate, true, work, |_| Vec::new()).await?;
            }
        }
        Ok(())
    })
}

/// A `YYYY-MM-DD` date as days since the epoch.
fn day_of_date(flag: &str, date: &str) -> anyhow::Result<u64> {
    let at = humantime::parse_rfc3339_weak(&format!("{date} 00:00:00"))
        .with_context(|| format!("{flag} {date:?}: not a date YYYY-MM-DD"))?;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .context("a date before 1970")?
        .as_secs();
    Ok(secs / 86_400)
}

/// `when` as Unix ms: an RFC 3339 time, or a span before now (`2h`, `7d`).
fn when_ms(flag: &str, when: &str) -> anyhow::Result<i64> {
    let at = match humantime::parse_duration(when) {
        Ok(span) => std::time::SystemTime::now() - span,
        Err(_) => humantime::parse_rfc3339_weak(when).with_context(|| {
            format!("{flag} {when:?}: neither an RFC 3339 time nor a span such as 2h or 7d")
        })?,
    };
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .context("a time before 1970")?
        .as_millis();
    Ok(ms as i64)
}

/// Runs a short-lived command and, when `ops.pushgateway_url` is set and `push`, pushes its
/// outcome there (what `values` reads from a success). A push that fails is logged; it never
/// fails the command.
async fn reported<T>(
    cfg: &Config,
    job: Job,
    push: bool,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
    values: impl FnOnce(&T) -> Vec<(&'static str, &'static str, f64)>,
) -> anyhow::Result<T> {
    let (started, clock) = (std::time::SystemTime::now(), std::time::Instant::now());
    let result = work.await;
    let url = &cfg.ops.pushgateway_url;
    if push && !url.is_empty() {
        let run = bluetick::pushgateway::Run {
            job,
            started,
            duration: clock.elapsed(),
            ok: result.is_ok(),
            values: result.as_ref().map(values).unwrap_or_default(),
        };
        if let Err(e) = bluetick::pushgateway::push(url, &run).await {
            tracing::warn!(error = %e, job = job.name(), "could not push the run's outcome");
        }
    }
    result
}

/// Audits every `secs` seconds until a signal, serving the findings per check on `listen`'s
/// /metrics: what a scheduled audit (a compose service, a Kubernetes Deployment) runs, so that
/// Prometheus scrapes the result and alerts on it.
async fn audit_every(
    cfg: &Config,
    limits: bluetick::audit::Limits,
    secs: u64,
    listen: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = bluetick::health::Health::default();
    // A run that takes longer than this is stuck (a hung query): /healthz says so.
    let run_watch = health.watch("audit run", std::time::Duration::from_secs(3600));
    let endpoints = bluetick::ops::Endpoints {
        metrics: bluetick::metrics::install(),
        health,
        ready: None,
    };
    let server = tokio::spawn(bluetick::ops::serve(listener, endpoints, {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        run_watch.beat();
        let result = bluetick::audit::run(cfg, limits, &mut std::io::sink()).await;
        run_watch.idle();
        match result {
            Ok(report) => {
                report.record_metrics();
                tracing::info!(findings = report.findings.len(), "audit done");
                for f in &report.findings {
                    tracing::warn!(check = f.check, place = %f.place, count = f.count, sample = %f.sample, "audit finding");
                }
            }
            Err(e) => tracing::error!(error = %e, "audit failed; trying again at the next run"),
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))) => {}
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

/// Creates `path` for an export: owner read/write only, and never over an existing file
/// unless `force` (then truncated, keeping the owner-only mode).
fn private_file(path: &std::path::Path, force: bool) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists; pass --force to overwrite it", path.display())
        } else {
            anyhow::anyhow!("creating {}: {e}", path.display())
        }
    })?;
    // With --force an existing file keeps its old mode through open(): narrow it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
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
