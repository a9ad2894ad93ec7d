//! The fault suite: the whole pipeline as real processes (the `bluetick` binary for ingest and
//! sink, tansu, ClickHouse), signed traffic delivered the way Meta delivers it, one fault per
//! scenario, and at the end a comparison of what was answered 200 with what ClickHouse holds.
//!
//! Invariant checked: every event of a webhook answered 200 is in ClickHouse exactly once
//! (zero lost, zero duplicated under `FINAL` and in the views), whatever failed; a webhook
//! not yet safe is answered non-200, so Meta's retry delivers it.
//!
//! Run alone, with the table: `scripts/faults.sh` (or `cargo test --test faults --
//! --nocapture`). `BLUETICK_FAULTS=broker,kill` picks scenarios by name.

mod bad_input;
#[path = "../common/mod.rs"]
mod common;
mod meta;
mod scenarios;
mod stage;

use std::fmt::Write as _;

/// One line of the table.
#[derive(Debug, Default)]
pub struct Row {
    pub scenario: &'static str,
    pub requests: usize,
    pub ok: usize,
    /// Non-200 answers by code (`err` = connection error or timeout).
    pub other: String,
    /// Distinct events in webhooks answered 200.
    pub acked: usize,
    /// Of those, how many ClickHouse holds.
    pub found: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Rows before deduplication minus rows after: replays the pipeline absorbed.
    pub replayed: usize,
    /// What else the scenario checked, in a few words.
    pub note: String,
    /// Checks of the scenario's own that did not hold.
    pub failures: Vec<String>,
}

impl Row {
    /// Records a scenario-specific check; a false one fails the suite after the table prints.
    pub fn check(&mut self, holds: bool, what: impl Into<String>) {
        if !holds {
            self.failures.push(what.into());
        }
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | requests sent | 200'd | other answers | events 200'd | rows found | lost | duplicated | duplicate rows collapsed | also checked |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.requests,
            r.ok,
            if r.other.is_empty() { "-" } else { &r.other },
            r.acked,
            r.found,
            r.lost,
            r.duplicated,
            r.replayed,
            r.note
        );
    }
    out
}

fn selected(name: &str) -> bool {
    match std::env::var("BLUETICK_FAULTS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_answered_200_is_ever_lost_or_doubled() {
    let mut rows = Vec::new();
    for name in scenarios::ALL {
        if selected(name) {
            eprintln!("fault suite: {name} …");
            let row = scenarios::run(name).await;
            eprintln!("fault suite: {name}: {row:?}");
            rows.push(row);
        }
    }
    let text = table(&rows);
    println!("\n{text}");
    if let Ok(path) = std::env::var("BLUETICK_FAULTS_TABLE") {
        std::fs::write(&path, &text).expect("write the table");
    }
    for r in &rows {
        assert_eq!(r.lost, 0, "{}: lost events\n{text}", r.scenario);
        assert_eq!(r.duplicated, 0, "{}: duplicated events\n{text}", r.scenario);
        assert!(r.failures.is_empty(), "{}: {:?}", r.scenario, r.failures);
    }
}
