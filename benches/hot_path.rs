//! Cost of ingest's per-request work, per payload size, against its two floors: HMAC-SHA256
//! alone and simd-json's typed parse alone on the same bytes. Also simd-json vs serde_json on
//! the same borrowed types. `split_mask` includes the parse (the split borrows its buffer):
//! split+mask alone is `split_mask` minus `simd_json_parse`; `encode` is the default record
//! format (protobuf), `encode_json` the other. `cargo bench --bench hot_path`.

use bluetick::ingest::parse::{self, SplitContext};
use bluetick::ingest::verify::{sign, Verifier};
use bluetick::model::record::Format;
use bluetick::model::{Event, Webhook};
use bluetick::privacy::Pepper;
use common::statuses;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod common;

const SECRET: &[u8] = b"bench-app-secret";

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("1_status", statuses(1)),
        ("100_statuses", statuses(100)),
        ("1000_statuses", statuses(1000)),
        (
            "inbound_mix",
            include_bytes!("../tests/fixtures/inbound_mix.json").to_vec(),
        ),
    ]
}

fn hot_path(c: &mut Criterion) {
    let verifier = Verifier::new(SECRET, b"");
    let pepper = Pepper::new(b"bench-pepper-0123456789");
    let id_key = bluetick::privacy::IdKey::new(b"bench-id-key-0123456789");
    let ctx = SplitContext {
        pepper: &pepper,
        id_key: &id_key,
        received_ms: 1,
        tenants: None,
    };
    for (name, body) in payloads() {
        let sig = sign(SECRET, &body);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("hmac_sha256", |b| {
            b.iter(|| verifier.verify(Some(sig.as_bytes()), &body).is_ok())
        });
        g.bench_function("simd_json_parse", |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| Webhook::parse(buf).map(|h| h.entry.len()).unwrap_or(0),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("serde_json_parse", |b| {
            b.iter(|| {
                serde_json::from_slice::<Webhook>(&body)
                    .map(|h| h.entry.len())
                    .unwrap_or(0)
            })
        });
        g.bench_function("split_mask", |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let hook = parse::parse(buf).expect("bench payload parses");
                    let mut n = 0usize;
                    let _ = parse::split(&hook, &ctx, |_| {
                        n += 1;
                        Ok::<(), std::convert::Infallible>(())
                    });
                    n
                },
                BatchSize::SmallInput,
            )
        });
        // Encoding alone, over events split once up front.
        let mut parsed = body.clone();
        let hook = parse::parse(&mut parsed).expect("bench payload parses");
        let mut events = Vec::new();
        let _ = parse::split(&hook, &ctx, |e| {
            events.push(e.clone());
            Ok::<(), std::convert::Infallible>(())
        });
        let mut out = Vec::with_capacity(1024);
        for (name, format) in [("encode", Format::default()), ("encode_json", Format::Json)] {
            g.bench_function(name, |b| {
                b.iter(|| {
                    events
                        .iter()
                        .map(|e| encoded_len(e, format, &mut out))
                        .sum::<usize>()
                })
            });
        }
        g.bench_function("verify_parse_split_mask_encode", |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    let ok = verifier.verify(Some(sig.as_bytes()), buf).is_ok();
                    let hook = parse::parse(buf).expect("bench payload parses");
                    let mut bytes = 0usize;
                    let _ = parse::split(&hook, &ctx, |e| {
                        bytes += encoded_len(e, Format::default(), &mut out);
                        Ok::<(), std::convert::Infallible>(())
                    });
                    (ok, bytes)
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

/// Encodes one event into the reused `out` in `format`, as ingest's record writer does, and
/// says how long it came out.
fn encoded_len(e: &Event<'_>, format: Format, out: &mut Vec<u8>) -> usize {
    out.clear();
    match format {
        Format::Json => e.encode(out),
        Format::Protobuf => bluetick::model::proto::encode(e, out),
    }
    out.len()
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
