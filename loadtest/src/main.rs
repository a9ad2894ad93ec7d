//! `bluetick-load`: open-loop webhook traffic for bluetick, and the servers it is compared with.
//!
//!   bluetick-load run  --rate 2000 --duration 10            # fixed rate, latency p50/p99/p99.9
//!   bluetick-load step --from 1000 --p99-ms 10              # raise the rate until p99 passes 10 ms
//!   bluetick-load bare --listen 127.0.0.1:18081             # reference: read body, answer 200
//!   bluetick-load baseline --listen 127.0.0.1:18082         # reference: axum + serde_json::Value
//!
//! Loopback only; every run is bounded in time and count.

use anyhow::{bail, Context};
use bluetick_loadtest::drive::{drive, Plan, Report};
use bluetick_loadtest::probe::{ClickHouse, Probes};
use bluetick_loadtest::traffic::{Shape, Traffic};
use bluetick_loadtest::{bare, baseline, report};
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Open-loop load generator for bluetick (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send signed webhooks at a fixed rate and report throughput and latency.
    Run(RunArgs),
    /// Raise the rate step by step until p99 latency or errors pass a bound; report the highest
    /// rate that held (the max sustainable rate).
    Step(StepArgs),
    /// Reference server: reads each body and answers 200, nothing else (the HTTP ceiling).
    Bare {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: String,
    },
    /// Reference server: a conventional receiver (axum, HMAC check, serde_json::Value, one
    /// Kafka record per status/message with bluetick's producer settings, 200 after acks).
    Baseline {
        #[arg(long, default_value = "127.0.0.1:18082")]
        listen: String,
        #[arg(
            long,
            env = "BLUETICK_APP_SECRET",
            default_value = "load-secret",
            hide_env_values = true
        )]
        secret: String,
        #[arg(long, env = "BLUETICK_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long, default_value = "bluetick.baseline.v1")]
        topic: String,
    },
}

#[derive(Args, Clone)]
struct Target {
    /// Webhook URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/webhook")]
    url: String,
    /// App secret the bodies are signed with (the server's `BLUETICK_APP_SECRET`).
    #[arg(
        long,
        env = "BLUETICK_APP_SECRET",
        default_value = "load-secret",
        hide_env_values = true
    )]
    secret: String,
    /// Request shape.
    #[arg(long, value_enum, default_value = "mixed")]
    shape: Shape,
    /// Share of requests repeated byte for byte, as Meta's retries are.
    #[arg(long, default_value_t = 0.05)]
    duplicates: f64,
    /// Requests in flight at most (connections opened at most).
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// Seconds after its scheduled send a request counts as failed.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Stop after this many requests even if time remains.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Worker threads of the generator (1 keeps it off the server's other core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the traffic; the same seed and run tag give the same bodies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tag in every generated id (default: the start time), so runs never collide.
    #[arg(long)]
    run_tag: Option<String>,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// Label in the JSON output.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Requests per second (open loop: sent on schedule whatever the answers).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds to send for (at most 3600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Probe statuses spread over the run whose arrival in ClickHouse is timed (needs the sink).
    #[arg(long, default_value_t = 0)]
    probes: u64,
    /// ClickHouse HTTP URL for probes.
    #[arg(
        long,
        env = "BLUETICK_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    #[arg(long, env = "BLUETICK_CLICKHOUSE_DATABASE", default_value = "bluetick")]
    database: String,
    #[arg(long, env = "BLUETICK_CLICKHOUSE_USER", default_value = "default")]
    clickhouse_user: String,
    #[arg(
        long,
        env = "BLUETICK_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    clickhouse_password: String,
    /// The pipeline's id key, to find probes by the pseudonyms stored for their ids.
    #[arg(
        long,
        env = "BLUETICK_ID_KEY",
        default_value = "",
        hide_env_values = true
    )]
    id_key: String,
}

#[derive(Args)]
struct StepArgs {
    #[command(flatten)]
    target: Target,
    /// First rate, requests per second.
    #[arg(long, default_value_t = 500.0)]
    from: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.25)]
    factor: f64,
    /// Never go above this rate.
    #[arg(long, default_value_t = 200_000.0)]
    max_rate: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    /// A step holds if p99 stays under this many milliseconds...
    #[arg(long, default_value_t = 10.0)]
    p99_ms: f64,
    /// ...and at most this share of requests is answered other than 200...
    #[arg(long, default_value_t = 0.001)]
    max_errors: f64,
    /// ...and at least this share of the target rate was answered 200.
    #[arg(long, default_value_t = 0.95)]
    min_achieved: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => runtime(args.target.threads)?.block_on(run(args)),
        Command::Step(args) => runtime(args.target.threads)?.block_on(step(args)),
        Command::Bare { listen } => server_runtime()?.block_on(async move {
            let listener = bind(&listen).await?;
            eprintln!("bare reference server on {listen}");
            Ok(bare::serve(listener).await?)
        }),
        Command::Baseline {
            listen,
            secret,
            brokers,
            topic,
        } => server_runtime()?.block_on(async move {
            let listener = bind(&listen).await?;
            eprintln!("baseline reference server on {listen}, producing to {topic}");
            baseline::serve(listener, secret.as_bytes(), &brokers, &topic).await
        }),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let t = &args.target;
    if args.duration > 3600 {
        bail!("--duration is at most 3600 seconds");
    }
    let run_tag = run_tag(t);
    let plan = plan(t, args.rate, args.duration, args.probes)?;
    if args.probes > 0 && args.id_key.is_empty() {
        bail!("--probes needs the pipeline's id key (--id-key or BLUETICK_ID_KEY) to find them");
    }
    let probes = (args.probes > 0).then(|| {
        let ch = ClickHouse {
            url: args.clickhouse_url.clone(),
            database: args.database.clone(),
            user: args.clickhouse_user.clone(),
            password: args.clickhouse_password.clone(),
            id_key: args.id_key.clone().into_bytes(),
        };
        Probes::start(ch)
    });
    if !t.json {
        eprintln!(
            "sending {:?} webhooks to {} at {}/s for {} s (run tag {run_tag})",
            t.shape, t.url, args.rate, args.duration
        );
    }
    let r = drive(&plan, traffic(t, &run_tag), probes).await;
    print(t, &r, true);
    Ok(())
}

async fn step(args: StepArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let run_tag = run_tag(t);
    if !t.json {
        eprintln!(
            "stepping {:?} webhooks to {} from {}/s x{} every {} s until p99 > {} ms",
            t.shape, t.url, args.from, args.factor, args.step_secs, args.p99_ms
        );
        println!("{}", report::header());
    }
    let mut rate = args.from;
    let mut best: Option<Report> = None;
    let mut step_no = 0u64;
    while rate <= args.max_rate {
        let plan = plan(t, rate, args.step_secs, 0)?;
        let tag = format!("{run_tag}s{step_no}");
        let r = drive(&plan, traffic(t, &tag), None).await;
        let errors = r.not_ok() as f64 / r.sent.max(1) as f64;
        let held = r.ms(0.99) <= args.p99_ms
            && errors <= args.max_errors
            && r.achieved_rate() >= args.min_achieved * rate;
        print(t, &r, false);
        if !held {
            break;
        }
        best = Some(r);
        rate *= args.factor;
        step_no += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match best {
        Some(r) if t.json => println!("{}", report::json(&format!("{}-max", t.label), &r)),
        Some(r) => println!(
            "max sustainable rate: {:.0} requests/s ({:.0} events/s) with p99 {:.2} ms",
            r.achieved_rate(),
            r.events_rate(),
            r.ms(0.99)
        ),
        None => println!("no step held: lower --from"),
    }
    Ok(())
}

fn plan(t: &Target, rate: f64, secs: u64, probes: u64) -> anyhow::Result<Plan> {
    let url: http::Uri = t.url.parse().context("--url")?;
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--url must be a loopback address (127.0.0.1, ::1, localhost): load stays on this machine");
    }
    if rate.is_nan() || rate <= 0.0 {
        bail!("the rate must be positive");
    }
    Ok(Plan {
        url,
        rate,
        duration: Duration::from_secs(secs),
        max_requests: t.max_requests,
        connections: t.connections.max(1),
        timeout: Duration::from_secs(t.timeout),
        probes,
    })
}

fn traffic(t: &Target, run_tag: &str) -> Traffic {
    Traffic::new(t.secret.as_bytes(), t.shape, run_tag, t.seed).duplicates(t.duplicates)
}

fn run_tag(t: &Target) -> String {
    t.run_tag
        .clone()
        .unwrap_or_else(|| format!("L{}", bluetick_loadtest::traffic::now_secs()))
}

fn print(t: &Target, r: &Report, with_header: bool) {
    if t.json {
        println!("{}", report::json(&t.label, r));
        return;
    }
    if with_header {
        println!("{}", report::header());
    }
    println!("{}", report::row(r));
    if let Some(line) = report::end_to_end(r) {
        println!("{line}");
    }
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

async fn bind(listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))
}
