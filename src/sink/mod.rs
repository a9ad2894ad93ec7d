//! `bluetick sink`: events from Kafka into ClickHouse, in batches, exactly once as seen by
//! the dashboards.
//!
//! The loop: receive records into a batch until it is due (rows, bytes or age); decode each
//! line straight into its table's RowBinary row; insert each table's rows; dead-letter what
//! cannot be stored; then, and only then, commit the batch's offsets. Delivery is
//! at-least-once (a crash between insert and commit replays the batch); the tables'
//! ReplacingMergeTree on the event id and views that group by message id turn that into exact
//! counts.
//!
//! When ClickHouse or the broker fails, the same batch is retried with exponential backoff,
//! offsets stay where they are, and partitions are paused so nothing more piles up. Records
//! that arrive anyway (e.g. from a rebalance) wait in the next batch.

pub mod batch;
pub mod consume;
pub mod dead_letter;
pub mod erased;
pub mod insert;
pub mod route;

use self::batch::{Batch, Limits, Reject};
use self::consume::Consumer;
use self::dead_letter::DeadLetters;
use self::erased::Erased;
use self::insert::Writer;
use self::route::{Rows, Window};
use crate::clickhouse::ClickHouse;
use crate::clock::{now_ms, now_secs};
use crate::config::{Config, RetentionConfig};
use crate::health::{Health, Watch};
use crate::metrics as m;
use crate::model::tables::Table;
use crate::privacy::IdKey;
use metrics::{counter, histogram};
use rdkafka::message::Message;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    ClickHouse(#[from] crate::clickhouse::ClickHouseError),
    #[error(transparent)]
    Setup(#[from] crate::kafka::SetupError),
}

/// What a sink run did, for its exit log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub batches: u64,
    pub records: u64,
    pub rows: u64,
    pub expired: u64,
    /// Events dropped because their person was erased after them.
    pub erased: u64,
    pub dead_letters: u64,
}

/// The shutdown future fired: stop without committing what is not stored.
#[derive(Debug)]
struct Stopped;

/// Consumes until `shutdown` completes, serving /metrics and /healthz on `listener`.
/// The batch in hand at shutdown is written if ClickHouse takes it; if not, it is left
/// uncommitted for the next run.
pub async fn run(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Totals, SinkError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // v1 events carry Meta's raw ids; the sink keys them as it decodes.
    let id_key = IdKey::new(cfg.id_key()?.expose().as_bytes());
    let health = Health::default();
    let batch_watch = health.watch(
        "sink batch",
        Duration::from_millis(cfg.sink.stall_after_ms.max(1)),
    );
    let consumer_alive = health.watch("kafka consumer", Duration::from_secs(60));
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let failing = Failing::default();
    let endpoints = crate::ops::Endpoints {
        metrics: m::install(),
        health: health.clone(),
        ready: Some(failing.ready_check(ch.clone())),
    };
    register_counters();
    let server = tokio::spawn(crate::ops::serve(
        listener,
        endpoints,
        wait_stop(stop_rx.clone()),
    ));

    // A wrong TLS or credentials setting stops the start; a server that is down does not:
    // the sink retries and commits nothing meanwhile.
    crate::kafka::prepare(&cfg.kafka).await?;
    match ch.check().await {
        Err(e) if e.is_fatal() => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "clickhouse not reachable yet; retrying meanwhile"),
        Ok(()) => {}
    }
    let consumer = Consumer::new(&cfg.kafka, &cfg.sink, consumer_alive)?;
    let stop_rx_for_rollup = stop_rx.clone();
    let mut sink = Sink {
        consumer: &consumer,
        writer: Writer::new(
            ch.clone(),
            Duration::from_millis(cfg.sink.insert_timeout_ms),
        ),
        ch,
        id_key,
        erased: Erased::default(),
        dead_letters: DeadLetters::new(&cfg.kafka)?,
        limits: Limits {
            max_rows: cfg.sink.batch_max_rows.max(1) as usize,
            max_bytes: cfg.sink.batch_max_bytes.max(1) as usize,
            max_age: Duration::from_millis(cfg.sink.batch_max_age_ms),
        },
        retention: cfg.retention.clone(),
        backoff: Backoff {
            initial: Duration::from_millis(cfg.sink.retry_initial_ms.max(1)),
            max: Duration::from_millis(cfg.sink.retry_max_ms.max(1)),
        },
        next: Batch::new(),
        rows: Rows::default(),
        paused: false,
        stop: stop_rx.clone(),
        totals: Totals::default(),
        batch_watch,
        failing,
        touched: Touched::default(),
    };
    let rollup = spawn_rollup(
        &cfg.sink,
        &sink.ch,
        &sink.touched,
        &health,
        stop_rx_for_rollup,
    );
    tracing::info!(
        group = %cfg.sink.group_id,
        topics = ?[&cfg.kafka.events_topic, &cfg.kafka.security_topic],
        database = %cfg.clickhouse.database,
        "sink consuming"
    );
    let totals = sink.run().await;
    drop(sink);
    if let Some(task) = rollup {
        // The last rollup covers what the last batches wrote.
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    }
    let _ = server.await;
    tracing::info!(?totals, "sink stopped");
    Ok(totals)
}

/// Recounts the daily aggregates of the days written, every `sink.rollup_interval_ms`, and
/// once more at shutdown. A failed rollup keeps its days for the next one.
fn spawn_rollup(
    cfg: &crate::config::SinkConfig,
    ch: &ClickHouse,
    touched: &Touched,
    health: &Health,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if cfg.rollup_interval_ms == 0 {
        return None;
    }
    let every = Duration::from_millis(cfg.rollup_interval_ms);
    let (ch, touched) = (ch.clone(), Arc::clone(touched));
    // A rollup that takes ten minutes is stuck (a hung query).
    let watch = health.watch("rollup", Duration::from_secs(600));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            let days = std::mem::take(&mut *touched.lock().unwrap_or_else(|p| p.into_inner()));
            if !days.is_empty() {
                watch.beat();
                let started = Instant::now();
                match crate::rollup::days(&ch, &days, now_ms()).await {
                    Ok(n) => {
                        counter!(m::SINK_ROLLUP_DAYS).increment(n as u64);
                        histogram!(m::SINK_ROLLUP_SECONDS).record(started.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        counter!(m::SINK_ROLLUP_FAILURES).increment(1);
                        tracing::warn!(error = %e, days = days.len(), "rollup failed; trying again at the next one");
                        touched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(days);
                    }
                }
                watch.idle();
            }
            if stopping {
                return;
            }
        }
    }))
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Sink<'c> {
    consumer: &'c Consumer,
    writer: Writer,
    ch: ClickHouse,
    id_key: IdKey,
    /// Erased identifiers, refreshed before each batch is routed.
    erased: Erased,
    dead_letters: DeadLetters,
    limits: Limits,
    retention: RetentionConfig,
    backoff: Backoff,
    /// Records received while a batch is being retried.
    next: Batch,
    /// The last batch's rows; their buffers are reused by the next.
    rows: Rows,
    paused: bool,
    stop: watch::Receiver<bool>,
    totals: Totals,
    /// Due while a batch is being stored: a batch that takes longer than
    /// `sink.stall_after_ms` makes `/healthz` answer 503.
    batch_watch: Watch,
    failing: Failing,
    /// (table, day) this sink wrote rows to since the last rollup.
    touched: Touched,
}

/// Days written to since the last rollup, shared with the rollup task. Locked once per
/// table write and once per rollup, never per row.
type Touched = Arc<Mutex<std::collections::BTreeSet<(Table, u64)>>>;

/// The step being retried and why, while one is: `/readyz` answers 503 with it.
#[derive(Clone, Default)]
struct Failing(Arc<Mutex<Option<String>>>);

impl Failing {
    fn set(&self, why: Option<String>) {
        if let Ok(mut f) = self.0.lock() {
            *f = why;
        }
    }

    /// Ready: no step failing now and ClickHouse answering a ping within 2 s.
    fn ready_check(&self, ch: ClickHouse) -> crate::ops::ReadyCheck {
        let failing = self.clone();
        Arc::new(move || {
            let (failing, ch) = (failing.clone(), ch.clone());
            Box::pin(async move {
                if let Some(why) = failing.0.lock().ok().and_then(|f| f.clone()) {
                    return (503, format!("retrying: {why}\n"));
                }
                match tokio::time::timeout(Duration::from_secs(2), ch.check()).await {
                    Ok(Ok(())) => (200, "ready\n".to_string()),
                    Ok(Err(e)) => (503, format!("clickhouse: {e}\n")),
                    Err(_) => (503, "clickhouse: no answer within 2 s\n".to_string()),
                }
            })
        })
    }
}

/// Series an alert sums, created at 0 at start: a counter that appears only at its first
/// increment makes `increase()` miss that increment, and a sum over a missing series is
/// empty rather than 0.
fn register_counters() {
    counter!(m::SINK_DEAD_LETTERS).increment(0);
    counter!(m::SINK_COMMIT_FAILURES).increment(0);
    counter!(m::SINK_CONSUME_ERRORS).increment(0);
    counter!(m::SINK_ERASED).increment(0);
    counter!(m::SINK_ROLLUP_FAILURES).increment(0);
    for table in Table::ALL {
        counter!(m::SINK_ROWS, "table" => table.name()).increment(0);
    }
}

impl<'c> Sink<'c> {
    async fn run(&mut self) -> Totals {
        let mut current = Batch::new();
        // One timer per batch, armed by its first record: per-record timers and clock reads
        // showed up in profiles.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed = false;
        loop {
            if !armed {
                if let Some(deadline) = current.deadline(&self.limits) {
                    timer.as_mut().reset(deadline);
                    armed = true;
                }
            }
            let aged = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => break,
                () = &mut timer, if armed => true,
                msg = self.consumer.recv() => {
                    accept(self.consumer, &mut current, msg);
                    false
                }
            };
            if !(aged || current.is_full(&self.limits)) {
                continue;
            }
            if self.flush(&current).await.is_err() {
                return self.totals.clone();
            }
            current.clear();
            armed = false;
            if !self.next.is_empty() {
                // Records that arrived during retries become the current batch; the cleared
                // buffers wait as the next one, keeping their capacity.
                std::mem::swap(&mut current, &mut self.next);
            }
        }
        // Shutting down: one attempt at what is in hand; retries end at once.
        if !current.is_empty() {
            let _ = self.flush(&current).await;
        }
        self.totals.clone()
    }

    /// Stores one batch, then commits its offsets. Retries until it succeeds or the sink is
    /// told to stop (then nothing is committed and the batch is read again next time).
    async fn flush(&mut self, batch: &Batch) -> Result<(), Stopped> {
        self.batch_watch.beat();
        let stored = self.store(batch).await;
        self.batch_watch.idle();
        stored
    }

    async fn store(&mut self, batch: &Batch) -> Result<(), Stopped> {
        let started = Instant::now();
        self.refresh_erased().await?;
        let window = Window::new(now_secs(), &self.retention);
        let mut rows = std::mem::take(&mut self.rows);
        rows.route_into(batch, &self.id_key, &window, &self.erased);
        let stored = self.write_all(batch, &rows, started).await;
        self.rows = rows;
        stored
    }

    /// Writes every table's rows, dead-letters what was refused, then commits the batch.
    async fn write_all(
        &mut self,
        batch: &Batch,
        rows: &Rows,
        started: Instant,
    ) -> Result<(), Stopped> {
        let mut rejects = rows.rejects.clone();
        for table in Table::ALL {
            rejects.extend(self.write(table, rows).await?);
        }
        if !rejects.is_empty() {
            self.dead_letter(batch, &rejects).await?;
        }
        self.consumer.commit(batch.commit_offsets());
        if self.paused {
            self.consumer.resume();
            self.paused = false;
        }
        self.record(batch, rows, &rejects, started);
        Ok(())
    }

    async fn write(&mut self, table: Table, rows: &Rows) -> Result<Vec<Reject>, Stopped> {
        let encoded = rows.table(table);
        if encoded.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let (writer, _, mut retry) = self.parts();
        let rejects = retry
            .run(table.name(), || writer.write(table, encoded))
            .await?;
        self.touch(table, encoded.rows().iter().map(|r| r.ts));
        let now_ms = now_ms();
        histogram!(m::SINK_INSERT_SECONDS, "table" => table.name())
            .record(started.elapsed().as_secs_f64());
        counter!(m::SINK_ROWS, "table" => table.name())
            .increment((encoded.len() - rejects.len()) as u64);
        let delay = histogram!(m::SINK_EVENT_DELAY_SECONDS, "table" => table.name());
        for row in encoded.rows() {
            delay.record(now_ms.saturating_sub(row.received_ms) as f64 / 1000.0);
        }
        Ok(rejects)
    }

    /// Notes the days of `times` (rows just stored in `table`) for the next rollup. Most rows
    /// of a batch share a day, so consecutive equal days are noted once.
    fn touch(&self, table: Table, times: impl Iterator<Item = u32>) {
        if !crate::rollup::feeds_aggregates(table) {
            return;
        }
        let Ok(mut touched) = self.touched.lock() else {
            return;
        };
        let mut last = None;
        for ts in times {
            let day = u64::from(ts) / 86_400;
            if last != Some(day) {
                touched.insert((table, day));
                last = Some(day);
            }
        }
    }

    /// Reloads the erased identifiers if `erasure_audit` changed; retried like an insert,
    /// since routing without them could store an erased person's row again.
    async fn refresh_erased(&mut self) -> Result<(), Stopped> {
        let keep_days = Table::ALL
            .iter()
            .map(|t| t.retention_days(&self.retention))
            .max()
            .unwrap_or(0);
        let (ch, seen) = (self.ch.clone(), self.erased.seen());
        let (_, _, mut retry) = self.parts();
        let reloaded = retry
            .run("erasures", || Erased::reload(ch.clone(), keep_days, seen))
            .await?;
        if let Some(erased) = reloaded {
            tracing::info!(identifiers = erased.len(), "erased identifiers reloaded");
            self.erased = erased;
        }
        Ok(())
    }

    async fn dead_letter(&mut self, batch: &Batch, rejects: &[Reject]) -> Result<(), Stopped> {
        // One warning per batch: a format mismatch can reject every line of every batch, and
        // a line of log per reject would cost more than the rejects themselves.
        if let Some(first) = rejects.first() {
            tracing::warn!(lines = rejects.len(), first_reason = %first.reason, "dead-lettering lines of a batch");
        }
        for r in rejects {
            tracing::debug!(line = r.line, reason = %r.reason, "dead-lettering a line");
        }
        let consumer = self.consumer;
        let (_, dead_letters, mut retry) = self.parts();
        retry
            .run("dead_letter", || {
                dead_letters.send(batch, rejects, |s| consumer.topic(s).to_string())
            })
            .await?;
        counter!(m::SINK_DEAD_LETTERS).increment(rejects.len() as u64);
        Ok(())
    }

    /// Splits the borrows a retried step needs: the writers it calls, and the state it
    /// updates while waiting.
    fn parts(&mut self) -> (&Writer, &DeadLetters, Retry<'_, 'c>) {
        (
            &self.writer,
            &self.dead_letters,
            Retry {
                backoff: self.backoff,
                consumer: self.consumer,
                next: &mut self.next,
                paused: &mut self.paused,
                stop: &mut self.stop,
                failing: &self.failing,
            },
        )
    }

    fn record(&mut self, batch: &Batch, rows: &Rows, rejects: &[Reject], started: Instant) {
        let t = &mut self.totals;
        t.batches += 1;
        t.records += batch.len() as u64;
        t.expired += rows.expired.len() as u64;
        t.erased += rows.erased.len() as u64;
        t.dead_letters += rejects.len() as u64;
        t.rows += (batch.rows() - rows.expired.len() - rows.erased.len() - rejects.len()) as u64;
        for (table, _) in &rows.expired {
            counter!(m::SINK_EXPIRED, "table" => table.name()).increment(1);
        }
        if !rows.erased.is_empty() {
            counter!(m::SINK_ERASED).increment(rows.erased.len() as u64);
        }
        histogram!(m::SINK_BATCH_ROWS).record(batch.rows() as f64);
        histogram!(m::SINK_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
        tracing::debug!(
            records = batch.len(),
            rows = batch.rows(),
            expired = rows.expired.len(),
            dead_letters = rejects.len(),
            ms = started.elapsed().as_millis() as u64,
            "batch stored"
        );
    }
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

/// A retry loop's state while it waits: it keeps receiving (the group must see the member
/// poll), parks what arrives in the next batch, keeps partitions paused, and watches for
/// shutdown.
struct Retry<'w, 'c> {
    backoff: Backoff,
    consumer: &'c Consumer,
    next: &'w mut Batch,
    paused: &'w mut bool,
    stop: &'w mut watch::Receiver<bool>,
    failing: &'w Failing,
}

impl Retry<'_, '_> {
    async fn run<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
        &mut self,
        step: &'static str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, Stopped> {
        let mut delay = self.backoff.initial;
        let mut failed = false;
        loop {
            match attempt().await {
                Ok(v) => {
                    if failed {
                        self.failing.set(None);
                    }
                    return Ok(v);
                }
                Err(e) => {
                    failed = true;
                    self.failing.set(Some(format!("{step}: {e}")));
                    counter!(m::SINK_RETRIES, "step" => step).increment(1);
                    // The error's text names a missing schema itself (`ClickHouseError`).
                    tracing::warn!(step, error = %e, retry_in_ms = delay.as_millis() as u64,
                        "failed; offsets held, retrying");
                    self.sleep(delay).await?;
                    delay = (delay * 2).min(self.backoff.max);
                }
            }
        }
    }

    async fn sleep(&mut self, delay: Duration) -> Result<(), Stopped> {
        if *self.stop.borrow() {
            return Err(Stopped);
        }
        if !*self.paused {
            self.consumer.pause();
            *self.paused = true;
        }
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => return Err(Stopped),
                () = tokio::time::sleep_until(until) => return Ok(()),
                msg = self.consumer.recv() => {
                    accept(self.consumer, self.next, msg);
                    // A rebalance may have assigned partitions that are not paused yet.
                    self.consumer.pause();
                }
            }
        }
    }
}

fn accept(
    consumer: &Consumer,
    batch: &mut Batch,
    msg: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>,
) {
    match msg {
        Ok(msg) => match consumer.source(msg.topic()) {
            Some(source) => batch.push(
                source,
                msg.partition(),
                msg.offset(),
                msg.payload().unwrap_or_default(),
            ),
            None => tracing::warn!(topic = msg.topic(), "record from an unexpected topic"),
        },
        Err(e) => {
            counter!(m::SINK_CONSUME_ERRORS).increment(1);
            tracing::warn!(error = %e, "consume error");
        }
    }
}
