//! Current ClickHouse, embedded by PyPI's `chdb-core` (no server of it reaches these machines):
//! runs a script of statements in a fresh in-process database and returns each answer as TSV.

use std::io::Write;
use std::process::{Command, Stdio};

/// The Python with chdb-core: `BLUETICK_CHDB_PYTHON`, else the cache `services.sh` fills.
pub fn python() -> String {
    if let Ok(p) = std::env::var("BLUETICK_CHDB_PYTHON") {
        return p;
    }
    let cache = std::env::var("BLUETICK_CACHE").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        std::env::var("XDG_CACHE_HOME").unwrap_or(format!("{home}/.cache")) + "/bluetick"
    });
    let python = format!("{cache}/chdb-venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "no chdb-core at {python}: run `scripts/services.sh install` (or set BLUETICK_CHDB_PYTHON)"
    );
    python
}

pub fn run(database: &str, statements: &[String]) -> Vec<String> {
    let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/chdb_run.py");
    let mut child = Command::new(python())
        .arg(runner)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let request = serde_json::json!({"database": database, "statements": statements});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write statements");
    let out = child.wait_with_output().expect("python finishes");
    assert!(
        out.status.success(),
        "current ClickHouse refused a statement:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON results")
}

/// Every statement of every schema file, in order: the schema as a script for [`run`] and for
/// the real server alike.
pub fn schema_statements() -> Vec<String> {
    bluetick::migrate::MIGRATIONS
        .iter()
        .flat_map(|m| m.statements())
        .collect()
}

/// A dashboard query with its tenant, WABA and phone number variables at "All".
pub fn variables_at_all(sql: &str) -> String {
    sql.replace("${tenant:singlequote}", "''")
        .replace("${waba:singlequote}", "''")
        .replace("${phone:singlequote}", "''")
}
