//! 5. Bad input: forged, missing and truncated signatures; bodies over the limit; slow-loris
//!    clients; invalid UTF-8, deep nesting, wrong types and truncated JSON under a valid
//!    signature; unknown fields. Each answers its status code, the server stays up with
//!    bounded memory, and nothing is stored but security events counting every refused signature and a
//!    dead-letter record per signed body that does not parse.

use crate::common::{brokers, ch_text, clickhouse_url, consume, get, now_secs, post, unique};
use crate::meta::{tally, Attempt, Hook, Meta, Tally};
use crate::stage::{score, Stage};
use crate::Row;
use bluetick::ingest::verify::sign;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

const MAX_BODY: usize = 1024 * 1024;
const SLOW_CLIENTS: usize = 20;

fn count(t: &mut Tally, status: u16) {
    t.requests += 1;
    if status == 200 {
        t.ok += 1;
    } else {
        let code = if status == 0 {
            "err".to_string()
        } else {
            status.to_string()
        };
        *t.other.entry(code).or_default() += 1;
    }
}

/// A valid status webhook whose every level also carries fields Meta never sent.
fn unknown_fields(tag: &str, i: usize) -> (Vec<u8>, (String, String)) {
    let id = crate::common::wamid("919876543210", &format!("{tag}U{i}"));
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "surprise": {"SECRET-TOP": [1, 2, {"deep": "SECRET-DEEP"}]},
        "entry": [{"id": "102290129340398", "extra": "SECRET-ENTRY", "changes": [{
            "field": "messages", "unexpected": null,
            "value": {
                "messaging_product": "whatsapp", "new_thing": {"text": "SECRET-VALUE"},
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922", "x": 1},
                "statuses": [{"id": id, "status": "delivered", "timestamp": now_secs().to_string(),
                    "recipient_id": "919876543210", "body": "SECRET-BODY", "caption": "SECRET-CAPTION",
                    "location": {"latitude": 1.5, "longitude": 2.5, "name": "SECRET-PLACE"}}]
            }}]}]
    });
    (
        serde_json::to_vec(&body).expect("json"),
        (crate::common::key(&id), "delivered".to_string()),
    )
}

/// Signed bodies that cannot be parsed as a webhook: each must be dead-lettered with a 200.
/// (A list or object of another type below `entry` is not among them: it reads as absent.)
fn unparseable() -> Vec<Vec<u8>> {
    let valid = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[]}]}"#;
    let mut deep = br#"{"object":"whatsapp_business_account","entry":"#.to_vec();
    deep.extend(std::iter::repeat(b'[').take(100_000));
    deep.extend(std::iter::repeat(b']').take(100_000));
    deep.push(b'}');
    let mut deep_unknown = br#"{"object":"whatsapp_business_account","x":"#.to_vec();
    deep_unknown.extend(std::iter::repeat(b'[').take(100_000));
    deep_unknown.extend(std::iter::repeat(b']').take(100_000));
    deep_unknown.extend(br#","entry":5}"#);
    vec![
        b"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"\xff\xfe\"}]}".to_vec(),
        b"\xc3\x28 not even json".to_vec(),
        deep,
        deep_unknown,
        br#"{"object":"whatsapp_business_account","entry":"nope"}"#.to_vec(),
        br#"{"object":"whatsapp_business_account","value":{"statuses":7}}"#.to_vec(),
        valid[..valid.len() / 2].to_vec(),
        Vec::new(),
    ]
}

/// Sends a raw HTTP/1.1 request head and `body` (reading the answer meanwhile, since the
/// server may answer before the body is in), optionally stalls, and returns the status code;
/// `Some(0)` if the server closed without an answer, `None` if it did neither in `within`.
async fn raw(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
    stall: bool,
    within: Duration,
) -> Option<u16> {
    let conn = TcpStream::connect(addr).await.ok()?;
    let (mut rd, mut wr) = conn.into_split();
    let write = async {
        let _ = wr.write_all(head.as_bytes()).await;
        for chunk in body.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                break; // the server stopped reading: its answer is what counts
            }
        }
        if stall {
            std::future::pending::<()>().await;
        }
    };
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        answer
    };
    let answer = timeout(within, async {
        tokio::select! {
            answer = read => answer,
            _ = async { write.await; std::future::pending::<()>().await } => unreachable!(),
        }
    })
    .await
    .ok()?;
    let line = String::from_utf8_lossy(&answer);
    Some(
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
    )
}

fn chunked_head(sig: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nHost: bluetick\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    for c in body.chunks(32 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub async fn run() -> Row {
    let mut row = Row {
        scenario: "5 bad input (signatures, size, slow clients, malformed, unknown fields)",
        ..Row::default()
    };
    let mut stage = Stage::new("bad-input", &brokers(), &clickhouse_url()).await;
    stage.cfg.ingest.max_body_bytes = MAX_BODY as u64;
    stage.cfg.ingest.header_read_timeout_ms = 1_000;
    stage.cfg.ingest.body_read_timeout_ms = 2_000;
    let (mut ingest, sink) = (stage.ingest(), stage.sink());
    let addr = stage.ingest_addr;
    let rss_before = ingest.rss_kib();
    let secret = stage.cfg.ingest.app_secret.0.clone();
    let tag = unique("x");
    let mut t = Tally::default();
    let expect = |t: &mut Tally, got: u16, want: u16, what: &str, row: &mut Row| {
        count(t, got);
        row.check(
            got == want,
            format!("{what}: answered {got}, expected {want}"),
        );
    };

    // Refused signatures: 401 and a security event each.
    let (good, _) = unknown_fields(&tag, 999);
    let forged = sign(b"not-the-app-secret", &good);
    let swapped = sign(secret.as_bytes(), b"another body");
    let truncated = sign(secret.as_bytes(), &good)[..20].to_string();
    let json = ("content-type", "application/json");
    let mut refused_signatures = 0;
    for _ in 0..4 {
        for (what, headers) in [
            (
                "forged",
                vec![json, ("x-hub-signature-256", forged.as_str())],
            ),
            ("missing", vec![json]),
            (
                "truncated",
                vec![json, ("x-hub-signature-256", truncated.as_str())],
            ),
            (
                "other body's",
                vec![json, ("x-hub-signature-256", swapped.as_str())],
            ),
            (
                "bare hex",
                vec![json, ("x-hub-signature-256", &forged[7..])],
            ),
        ] {
            let got = post(addr, &good, &headers).await.status;
            expect(&mut t, got, 401, &format!("{what} signature"), &mut row);
            refused_signatures += 1;
        }
    }
    let got = post(
        addr,
        &good,
        &[
            ("content-type", "text/plain"),
            ("x-hub-signature-256", &sign(secret.as_bytes(), &good)),
        ],
    )
    .await
    .status;
    expect(&mut t, got, 415, "text/plain", &mut row);

    // Over the limit, declared or chunked, several at once: 413 without buffering them all.
    let huge = vec![b' '; 2 * MAX_BODY];
    let huge_sig = sign(secret.as_bytes(), &huge);
    let declared = format!(
        "POST /webhook HTTP/1.1\r\nHost: bluetick\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: {huge_sig}\r\nContent-Length: {}\r\n\r\n",
        huge.len()
    );
    let chunked_body = chunked(&huge);
    for round in 0..4 {
        let mut wave = Vec::new();
        for i in 0..8 {
            let (head, body) = if (round + i) % 2 == 0 {
                (declared.clone(), huge.clone())
            } else {
                (chunked_head(&huge_sig), chunked_body.clone())
            };
            wave.push(tokio::spawn(async move {
                raw(addr, &head, &body, false, Duration::from_secs(10)).await
            }));
        }
        for w in wave {
            let got = w.await.expect("task").unwrap_or(0);
            expect(&mut t, got, 413, "body over the limit", &mut row);
        }
    }
    // Just under the limit but forged: read in full, refused, buffer released.
    let big = {
        let mut b = br#"{"object":"whatsapp_business_account","entry":[],"pad":""#.to_vec();
        b.resize(MAX_BODY - 16, b'a');
        b.extend_from_slice(b"\"}");
        b
    };
    let big_forged = sign(b"not-the-app-secret", &big);
    for _ in 0..4 {
        let mut wave = Vec::new();
        for _ in 0..8 {
            let head = chunked_head(&big_forged);
            let body = chunked(&big);
            wave.push(tokio::spawn(async move {
                raw(addr, &head, &body, false, Duration::from_secs(10)).await
            }));
        }
        for w in wave {
            let got = w.await.expect("task").unwrap_or(0);
            expect(&mut t, got, 401, "forged body near the limit", &mut row);
            refused_signatures += 1;
        }
    }

    // Slow-loris: half the clients stall inside the headers, half inside the body; the
    // server cuts each one while answering everyone else.
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let sig = sign(secret.as_bytes(), &good);
        let head = if i % 2 == 0 {
            "POST /webhook HTTP/1.1\r\nHost: bluetick\r\nContent-Ty".to_string()
        } else {
            format!(
                "POST /webhook HTTP/1.1\r\nHost: bluetick\r\nContent-Type: application/json\r\n\
                 X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n",
                good.len()
            )
        };
        slow.push(tokio::spawn(async move {
            raw(addr, &head, b"{\"obj", true, Duration::from_secs(8)).await
        }));
    }
    let meta = Meta::new(addr);
    let mut valid_hooks = Vec::new();
    let mut valid_attempts: Vec<Attempt> = Vec::new();
    for i in 0..10 {
        let (body, key) = unknown_fields(&tag, i);
        valid_hooks.push(Hook {
            signature: sign(secret.as_bytes(), &body),
            body: body.into(),
            events: vec![key],
        });
    }
    // A scalar of the wrong type spoils only its own field (read as empty): the status is
    // kept, with the received time for the timestamp it lacks.
    let id = crate::common::wamid("919876543210", &format!("{tag}WRONG"));
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"106540352242922"}},"statuses":[{{"id":"{id}","status":"sent","timestamp":{{"SECRET":1}},"recipient_id":["SECRET"]}}]}}}}]}}]}}"#
    );
    valid_hooks.push(Hook {
        signature: sign(secret.as_bytes(), body.as_bytes()),
        body: body.into_bytes().into(),
        events: vec![(crate::common::key(&id), "sent".to_string())],
    });
    for _ in 0..2 {
        valid_attempts.extend(
            meta.redeliver(&valid_hooks, &[], Duration::from_secs(30))
                .await,
        );
    }
    let mut cut = 0;
    for (i, s) in slow.into_iter().enumerate() {
        let got = s.await.expect("task");
        // Inside the headers hyper's header timer fires: it answers 400 (or just closes if
        // the timer fires mid-write); inside the body ingest answers 408.
        let ok = if i % 2 == 0 {
            matches!(got, Some(0 | 400))
        } else {
            got == Some(408)
        };
        cut += usize::from(ok);
        count(&mut t, got.unwrap_or(0));
    }
    let slow_secs = started.elapsed().as_secs_f64();
    row.check(
        cut == SLOW_CLIENTS,
        format!("{cut}/{SLOW_CLIENTS} slow clients cut"),
    );

    // Signed but not a webhook: 200 (Meta must stop retrying) and a dead-letter record each.
    let bad = unparseable();
    for body in &bad {
        let got = post(
            addr,
            body,
            &[
                json,
                ("x-hub-signature-256", &sign(secret.as_bytes(), body)),
            ],
        )
        .await
        .status;
        expect(
            &mut t,
            got,
            200,
            &format!("unparseable signed body of {} bytes", body.len()),
            &mut row,
        );
    }

    let alive = ingest.is_running() && get(addr, "/healthz").await.status == 200;
    let rss_after = ingest.rss_kib();
    row.check(alive, "ingest is not up after the bad input");
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    row.check(
        growth_mib < 128,
        format!("ingest RSS grew by {growth_mib} MiB"),
    );

    // What was stored: the valid events, one security event per refused signature, one
    // dead-letter record per unparseable body — and no content anywhere.
    let valid = tally(&valid_hooks, &valid_attempts);
    t.requests += valid.requests;
    t.ok += valid.ok;
    t.acked = valid.acked.clone();
    let held = stage.settle(&t.acked, Duration::from_secs(60)).await;
    // Refusals are counted per source and reason over a window: rows sum to the refusals.
    let security_sql = "SELECT sum(count) FROM security_event";
    let mut security = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        security = ch_text(&stage.cfg, security_sql)
            .await
            .trim()
            .parse()
            .unwrap_or(0);
        if security >= refused_signatures {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    row.check(
        security == refused_signatures,
        format!("{security} security events for {refused_signatures} refused signatures"),
    );
    let dead = consume(
        &stage.cfg.kafka.brokers,
        &stage.cfg.kafka.dead_letter_topic,
        bad.len(),
        Duration::from_secs(20),
    )
    .await;
    row.check(
        dead.len() == bad.len(),
        format!(
            "{} dead letters for {} unparseable bodies",
            dead.len(),
            bad.len()
        ),
    );
    row.check(
        dead.iter()
            .all(|r| !r.text().contains("SECRET") && !r.text().contains("919876543210")),
        "content or a number reached the dead-letter topic",
    );
    let stored = ch_text(&stage.cfg, "SELECT * FROM message_status FORMAT TSV").await
        + &ch_text(&stage.cfg, "SELECT * FROM inbound_message FORMAT TSV").await
        + &ch_text(&stage.cfg, "SELECT * FROM account_event FORMAT TSV").await;
    row.check(
        !stored.contains("SECRET") && !stored.contains("919876543210"),
        "content or a number reached ClickHouse",
    );

    score(&mut row, &valid_hooks, &t, &held);
    row.note = format!(
        "{security} security events, {} dead letters, {cut}/{SLOW_CLIENTS} slow clients cut in {slow_secs:.1} s, RSS {} → {} MiB",
        dead.len(),
        rss_before / 1024,
        rss_after / 1024
    );
    ingest.stop();
    sink.stop();
    stage.finish(&row).await;
    row
}
