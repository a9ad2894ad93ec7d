//! Fuzzing of ingest's parse → split → mask → encode path with arbitrary mutations of real
//! payloads (the seeds in `tests/fixtures/` and `tests/corpus/`): values replaced by values of
//! any type, keys removed and added, then bytes truncated, overwritten or inserted.
//!
//! For every input: no panic; if it parses, no content marker (`SECRET`) and no customer
//! number of the seed survives into an encoded event, a masked number keeps at most six
//! digits, and every encoded event decodes in the sink to the same event, in both record
//! formats; Google's protobuf library reads the protobuf records with the schema file alone.
//!
//! CI runs a short pass (`PROPTEST_CASES`, default 256 per property); `scripts/fuzz.sh` runs a
//! long one. Failures proptest finds are kept in `tests/fuzz_parse.proptest-regressions` and
//! replayed first; add a minimized input to `tests/corpus/` to keep it as a seed.

mod common;

use bluetick::ingest::parse::{self, SplitContext};
use bluetick::model::record::{Format, RecordWriter};
use bluetick::model::{skeleton, Event};
use bluetick::privacy::Pepper;
use bluetick::sink::batch::{Batch, Source};
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// A seed: its JSON and the customer numbers (digits only) it carries.
struct Seed {
    json: Value,
    numbers: Vec<String>,
}

fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut out = Vec::new();
        for dir in ["fixtures", "corpus"] {
            let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("seed dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            paths.sort();
            for path in paths {
                let json: Value = serde_json::from_slice(&std::fs::read(&path).expect("seed"))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut numbers = Vec::new();
                collect_numbers(&json, &mut numbers);
                out.push(Seed { json, numbers });
            }
        }
        assert!(out.len() >= 8, "seed corpus is missing files");
        out
    })
}

/// Digits of every customer number field (`recipient_id`, `from`, `wa_id`) in `v`.
fn collect_numbers(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if let ("recipient_id" | "from" | "wa_id", Value::String(s)) = (k.as_str(), v) {
                    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                    // The business's own number appears as `context.from`; only customers count.
                    if digits.len() >= 7 && digits != "15550783881" {
                        out.push(digits);
                    }
                }
                collect_numbers(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_numbers(v, out)),
        _ => {}
    }
}

/// Any JSON value, a few levels deep, whose strings never contain a content marker.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{0,24}".prop_map(Value::String),
        "\\PC{0,16}".prop_map(Value::String),
        Just(Value::String(String::new())),
    ]
    .prop_filter("no content marker in generated text", |v| {
        !v.to_string().contains("SECRET")
    });
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One structural change, aimed at the node numbered `at` in a pre-order walk.
#[derive(Debug, Clone)]
enum Edit {
    Replace { at: usize, with: Value },
    Remove { at: usize },
    Insert { at: usize, key: String, with: Value },
}

fn any_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any_value()).prop_map(|(at, with)| Edit::Replace { at, with }),
        any::<usize>().prop_map(|at| Edit::Remove { at }),
        (any::<usize>(), "[a-z_]{1,20}", any_value()).prop_map(|(at, key, with)| Edit::Insert {
            at,
            key,
            with
        }),
    ]
}

/// A change to the serialized bytes.
#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Overwrite(usize, u8),
    Insert(usize, Vec<u8>),
}

fn any_byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Overwrite(at, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| ByteEdit::Insert(at, b)),
    ]
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Object(m) => m.values().map(count_nodes).sum(),
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `edit` to the node numbered `target` (counting down through `n`).
fn apply(v: &mut Value, edit: &Edit, target: usize, n: &mut usize) -> bool {
    if *n == target {
        match edit {
            Edit::Replace { with, .. } => *v = with.clone(),
            Edit::Insert { key, with, .. } => {
                if let Value::Object(m) = v {
                    m.insert(key.clone(), with.clone());
                } else {
                    *v = with.clone();
                }
            }
            Edit::Remove { .. } => match v {
                Value::Object(m) => {
                    let first = m.keys().next().cloned();
                    first.map(|k| m.remove(&k));
                }
                Value::Array(a) => {
                    a.pop();
                }
                _ => *v = Value::Null,
            },
        }
        return true;
    }
    *n += 1;
    let children: Vec<&mut Value> = match v {
        Value::Object(m) => m.values_mut().collect(),
        Value::Array(a) => a.iter_mut().collect(),
        _ => Vec::new(),
    };
    children.into_iter().any(|c| apply(c, edit, target, n))
}

fn mutate(seed: &Seed, edits: &[Edit], bytes: &[ByteEdit]) -> Vec<u8> {
    let mut json = seed.json.clone();
    for edit in edits {
        let at = match edit {
            Edit::Replace { at, .. } | Edit::Remove { at } | Edit::Insert { at, .. } => *at,
        };
        let target = at % count_nodes(&json);
        apply(&mut json, edit, target, &mut 0);
    }
    let mut body = serde_json::to_vec(&json).expect("json");
    for edit in bytes {
        let len = body.len().max(1);
        match edit {
            ByteEdit::Truncate(at) => body.truncate(at % len),
            ByteEdit::Overwrite(at, b) => {
                if let Some(x) = body.get_mut(at % len) {
                    *x = *b;
                }
            }
            ByteEdit::Insert(at, b) => {
                let at = (at % len).min(body.len());
                body.splice(at..at, b.iter().copied());
            }
        }
    }
    body
}

/// Runs ingest's path on `body` and checks what comes out; `Err` names a broken promise.
fn check(seed: &Seed, mut body: Vec<u8>) -> Result<usize, String> {
    let original = body.clone();
    let hook = match parse::parse(&mut body) {
        Ok(hook) => hook,
        // Refused: only its skeleton is dead-lettered, which must hold no content either.
        Err(e) => {
            let reason = skeleton::redact_reason(&e.to_string());
            let record = skeleton::skeleton(&original, &reason, 1);
            let text = String::from_utf8_lossy(&record);
            if text.contains("SECRET") {
                return Err(format!("content reached a dead letter: {text}"));
            }
            if let Some(n) = seed.numbers.iter().find(|n| text.contains(n.as_str())) {
                return Err(format!("customer number {n} reached a dead letter: {text}"));
            }
            if let Some(hit) = bluetick::privacy::detect::scan(&text) {
                return Err(format!("a dead letter holds {hit:?}: {text}"));
            }
            return Ok(0);
        }
    };
    let pepper = Pepper::new(b"fuzz-pepper-0123456789");
    let id_key = bluetick::privacy::IdKey::new(b"bench-id-key-0123456789");
    let ctx = SplitContext {
        pepper: &pepper,
        id_key: &id_key,
        received_ms: 1_750_000_000_000,
        tenants: None,
    };
    let mut encoded = Vec::new();
    parse::split(&hook, &ctx, |event| {
        let mut out = Vec::new();
        event.encode(&mut out);
        encoded.push((out, event.clone()));
        Ok::<_, String>(())
    })?;
    for (json, event) in &encoded {
        let mut binary = Vec::new();
        bluetick::model::proto::encode(event, &mut binary);
        for text in [json, &binary].map(|b| String::from_utf8_lossy(b)) {
            if text.contains("SECRET") {
                return Err(format!("content reached an event: {text}"));
            }
            if let Some(n) = seed.numbers.iter().find(|n| text.contains(n.as_str())) {
                return Err(format!("customer number {n} reached an event: {text}"));
            }
        }
    }
    for format in [Format::Json, Format::Protobuf] {
        sink_reads_back(format, &encoded, &id_key).map_err(|e| format!("{format:?}: {e}"))?;
    }
    Ok(encoded.len())
}

/// Framed as ingest frames them, several events per record, then split and decoded again by
/// the sink: every event comes back as it was, masked numbers still masked.
fn sink_reads_back(
    format: Format,
    encoded: &[(Vec<u8>, Event<'_>)],
    id_key: &bluetick::privacy::IdKey,
) -> Result<(), String> {
    let mut batch = Batch::new();
    let mut writer = RecordWriter::with_capacity(format, 0);
    for (i, (_, event)) in encoded.iter().enumerate() {
        if writer.push(event) {
            batch.push(Source::Events, 0, i as i64, writer.bytes());
            writer.clear();
        }
    }
    if !writer.is_empty() {
        batch.push(Source::Events, 0, encoded.len() as i64, writer.bytes());
    }
    let decoded = batch.decode(id_key);
    if decoded.events.len() != encoded.len() {
        return Err(format!(
            "{} events written, {} read back",
            encoded.len(),
            decoded.events.len()
        ));
    }
    if let Some(r) = decoded.rejects.first() {
        return Err(format!(
            "the sink cannot decode an event ingest wrote: {}",
            r.reason
        ));
    }
    for ((_, back), (_, original)) in decoded.events.iter().zip(encoded) {
        if back != original {
            return Err(format!(
                "event changed on its way to the sink: {original:?} → {back:?}"
            ));
        }
        if let Some(m) = &back.person_masked {
            let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
            if digits > 6 {
                return Err(format!("masked number keeps {digits} digits: {m}"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_seed_passes_unchanged() {
    for seed in seeds() {
        let body = serde_json::to_vec(&seed.json).expect("json");
        let events = check(seed, body).expect("seed passes");
        assert!(events > 0, "a seed that yields no event tests nothing");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// Structural mutations: the body stays JSON, the shape drifts from Meta's.
    #[test]
    fn mutated_webhooks_never_panic_or_leak(
        which in any::<usize>(),
        edits in prop::collection::vec(any_edit(), 1..6),
    ) {
        let seed = &seeds()[which % seeds().len()];
        let body = mutate(seed, &edits, &[]);
        check(seed, body).map_err(TestCaseError::fail)?;
    }

    /// Byte-level damage on top: truncation, stray bytes, invalid UTF-8.
    #[test]
    fn damaged_bytes_never_panic_or_leak(
        which in any::<usize>(),
        edits in prop::collection::vec(any_edit(), 0..3),
        bytes in prop::collection::vec(any_byte_edit(), 1..4),
    ) {
        let seed = &seeds()[which % seeds().len()];
        let body = mutate(seed, &edits, &bytes);
        check(seed, body).map_err(TestCaseError::fail)?;
    }
}

/// Inputs that once broke a parser somewhere: nesting far past any stack, and numbers and
/// strings at the edges of their types.
#[test]
fn hostile_shapes_are_refused_or_handled() {
    let seed = &seeds()[0];
    let mut deep = br#"{"object":"whatsapp_business_account","x":"#.to_vec();
    deep.extend(std::iter::repeat(b'[').take(200_000));
    deep.extend(std::iter::repeat(b']').take(200_000));
    deep.extend(br#","entry":[]}"#);
    let huge_number =
        br#"{"object":"whatsapp_business_account","entry":[{"id":1e999999,"changes":[]}]}"#;
    let long_key = format!(
        r#"{{"object":"whatsapp_business_account","{}":1,"entry":[]}}"#,
        "k".repeat(1 << 20)
    );
    for body in [deep, huge_number.to_vec(), long_key.into_bytes()] {
        check(seed, body).expect("no leak");
    }
}

/// The mutations must leave enough inputs parseable to exercise split, mask and encode, or
/// the properties above would hold vacuously.
#[test]
fn most_structural_mutations_still_reach_the_encoder() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = (any::<usize>(), prop::collection::vec(any_edit(), 1..6));
    let (mut with_events, total) = (0, 400);
    for _ in 0..total {
        let (which, edits) = strategy.new_tree(&mut runner).expect("case").current();
        let seed = &seeds()[which % seeds().len()];
        if check(seed, mutate(seed, &edits, &[])).expect("no broken promise") > 0 {
            with_events += 1;
        }
    }
    eprintln!("{with_events}/{total} mutated webhooks produced events");
    assert!(
        with_events * 3 >= total,
        "only {with_events}/{total} mutated webhooks parsed"
    );
}

/// A consumer outside bluetick reads the protobuf records with Google's protobuf library and
/// `schemas/event.v2.proto` alone (compiled by protoc), and finds what the JSON form says:
/// every seed's events, framed as ingest frames them.
#[test]
fn protobuf_records_read_with_the_schema_alone_say_what_the_json_says() {
    let pepper = Pepper::new(b"fuzz-pepper-0123456789");
    let id_key = bluetick::privacy::IdKey::new(b"bench-id-key-0123456789");
    let (mut records, mut expected) = (String::new(), Vec::new());
    for seed in seeds() {
        let mut body = serde_json::to_vec(&seed.json).expect("json");
        let Ok(hook) = parse::parse(&mut body) else {
            continue;
        };
        let ctx = SplitContext {
            pepper: &pepper,
            id_key: &id_key,
            received_ms: 1_750_000_000_000,
            tenants: None,
        };
        let mut writer = RecordWriter::with_capacity(Format::Protobuf, 0);
        let mut events = Vec::new();
        parse::split(&hook, &ctx, |event| {
            writer.push(event);
            events.push(as_protobuf_sees_it(event));
            Ok::<_, String>(())
        })
        .expect("seed splits");
        if !writer.is_empty() {
            records.push_str(&hex(writer.bytes()));
            records.push('\n');
            expected.push(Value::Array(events));
        }
    }
    assert!(expected.len() > 10, "the seeds give records to read");
    let out = std::process::Command::new(common::chdb::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/protobuf_read.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(records.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON from the reader"))
        .collect();
    assert_eq!(read, expected);
}

/// An event's JSON less what proto3 leaves out of a message: fields without `optional` that
/// hold their type's default (0, "").
fn as_protobuf_sees_it(event: &Event<'_>) -> Value {
    let mut json = serde_json::to_value(event).expect("event as JSON");
    if let Value::Object(fields) = &mut json {
        fields.retain(|key, value| {
            let implicit = ["v", "received_ms", "ts", "waba_id", "field"].contains(&key.as_str());
            !(implicit && (value == &Value::from(0) || value == &Value::from("")))
        });
    }
    json
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
