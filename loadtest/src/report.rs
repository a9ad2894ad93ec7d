//! How runs are printed: a table for people, one JSON object per run for scripts.

use crate::drive::Report;
use std::fmt::Write as _;

pub fn header() -> String {
    format!(
        "{:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}  {}",
        "target/s", "sent", "200", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "not 200"
    )
}

pub fn row(r: &Report) -> String {
    let mut not_ok = String::new();
    for (code, n) in &r.refused {
        let _ = write!(not_ok, "{code}:{n} ");
    }
    if r.failed > 0 {
        let _ = write!(not_ok, "failed:{}", r.failed);
    }
    format!(
        "{:>9.0} {:>9} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1}  {}",
        r.target_rate,
        r.sent,
        r.ok,
        r.events_rate(),
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999),
        r.latency.max() as f64 / 1000.0,
        if not_ok.is_empty() {
            "-"
        } else {
            not_ok.trim()
        }
    )
}

pub fn end_to_end(r: &Report) -> Option<String> {
    let (h, seen, sent) = r.end_to_end.as_ref()?;
    Some(format!(
        "webhook -> queryable in ClickHouse: {seen}/{sent} probes seen, p50 {} ms, p99 {} ms, max {} ms",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    ))
}

/// One line of JSON with every figure, for scripts that build tables.
pub fn json(label: &str, r: &Report) -> String {
    let e2e = r.end_to_end.as_ref().map(|(h, seen, sent)| {
        serde_json::json!({
            "seen": seen, "sent": sent, "p50_ms": h.value_at_quantile(0.5),
            "p99_ms": h.value_at_quantile(0.99), "max_ms": h.max(),
        })
    });
    serde_json::json!({
        "label": label,
        "target_rate": r.target_rate,
        "elapsed_s": r.elapsed.as_secs_f64(),
        "sent": r.sent,
        "ok": r.ok,
        "events_ok": r.events_ok,
        "rate": r.achieved_rate(),
        "events_rate": r.events_rate(),
        "refused": r.refused.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        "failed": r.failed,
        "p50_ms": r.ms(0.5),
        "p99_ms": r.ms(0.99),
        "p999_ms": r.ms(0.999),
        "max_ms": r.latency.max() as f64 / 1000.0,
        "end_to_end": e2e,
    })
    .to_string()
}
