//! The sink's own work per batch, apart from the INSERT (RowBinary, lz4, HTTP) and Kafka:
//! copying records into the batch, decoding their events and routing them into their tables'
//! RowBinary rows (the bytes the INSERT sends), for
//! records framed as ingest frames them, in each record format. Reported as rows per second of
//! one core; the whole sink, insert included, is measured by `scripts/bench.sh`.
//! `cargo bench --bench sink_path`.

use bluetick::config::RetentionConfig;
use bluetick::ingest::parse::{self, SplitContext};
use bluetick::model::record::{Format, RecordWriter};
use bluetick::model::Event;
use bluetick::model::Table;
use bluetick::privacy::Pepper;
use bluetick::sink::batch::{Batch, Line, Source};
use bluetick::sink::route::{Rows, Window};
use common::statuses;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

/// After every generated status (`statuses` counts seconds up from 1,750,000,000).
const NOW: u64 = 1_750_000_000 + 86_400;

/// `rows` status events as ingest would have written them: records of up to 64 KiB.
fn records(format: Format, rows: usize) -> Vec<Vec<u8>> {
    let mut body = statuses(rows);
    let hook = parse::parse(&mut body).expect("bench body parses");
    let pepper = Pepper::new(b"bench-pepper-0123456789");
    let id_key = bluetick::privacy::IdKey::new(b"bench-id-key-0123456789");
    let ctx = SplitContext {
        pepper: &pepper,
        id_key: &id_key,
        received_ms: NOW * 1000,
        tenants: None,
    };
    let mut out = Vec::new();
    let mut writer = RecordWriter::with_capacity(format, 80 * 1024);
    let mut emit = |event: &Event<'_>| {
        if writer.push(event) {
            out.push(writer.bytes().to_vec());
            writer.clear();
        }
        Ok::<_, ()>(())
    };
    parse::split(&hook, &ctx, &mut emit).expect("split");
    if !writer.is_empty() {
        out.push(writer.bytes().to_vec());
    }
    out
}

/// Empties `batch` and copies `records` into it, as the consumer loop does.
fn fill(batch: &mut Batch, records: &[Vec<u8>]) {
    batch.clear();
    for (offset, record) in records.iter().enumerate() {
        batch.push(Source::Events, 0, offset as i64, record);
    }
}

fn sink_path(c: &mut Criterion) {
    let rows = 50_000;
    let window = Window::new(NOW, &RetentionConfig::default());
    let mut g = c.benchmark_group("sink_50k_rows");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(20);
    let mut batch = Batch::new();
    let mut routed = Rows::default();
    let id_key = bluetick::privacy::IdKey::new(b"bench-id-key-0123456789");
    let erased = bluetick::sink::erased::Erased::default();
    // The three steps cumulatively, per format: their differences price copying, decoding
    // and routing (encoding rows included) apart (bench.sh reads them to compare the record formats).
    for (name, format) in [("json", Format::Json), ("protobuf", Format::Protobuf)] {
        let records = records(format, rows);
        g.bench_function(format!("{name}_push"), |b| {
            b.iter(|| {
                fill(&mut batch, &records);
                assert_eq!(batch.rows(), rows);
            })
        });
        g.bench_function(format!("{name}_push_decode"), |b| {
            b.iter(|| {
                fill(&mut batch, &records);
                let mut events = 0;
                batch.decode_each(&id_key, |_, line| {
                    events += usize::from(matches!(line, Ok(Line::Event(_))));
                });
                assert_eq!(events, rows);
            })
        });
        g.bench_function(format!("{name}_push_decode_route"), |b| {
            b.iter(|| {
                fill(&mut batch, &records);
                routed.route_into(&batch, &id_key, &window, &erased);
                assert_eq!(routed.table(Table::MessageStatus).len(), rows);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sink_path);
criterion_main!(benches);
