//! Encryption in transit and least privilege, with real TLS: a test CA signs the certificates
//! of a Kafka-protocol broker (tansu behind stunnel, which terminates TLS for it) and of a
//! ClickHouse server serving HTTPS with one user per role (`deploy/clickhouse/users.xml`).
//! The whole pipeline runs over both, authenticated to the broker with SASL/SCRAM; wrong
//! credentials and a wrong CA stop every component at start with a message naming the
//! setting; each role can do only its job.

mod common;

use bluetick::config::{Config, KafkaSecurity, Secret};
use common::procs::{
    free_port, scratch_dir, Broker, ClickHouseExtras, ClickHouseServer, Pki, Stunnel,
};
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SASL_USER: &str = "bluetick";
const SASL_PASSWORD: &str = "Sk7pQ2xW9mLr4Tz8";
const PASSWORDS: [(&str, &str); 3] = [
    ("BLUETICK_CH_ADMIN_PASSWORD", "Ad9x2Lq7Wm4Rz8Kp"),
    ("BLUETICK_CH_WRITER_PASSWORD", "Wr3k8Nq2Xv6Bm9Tz"),
    ("BLUETICK_CH_READER_PASSWORD", "Re5t1Pz8Qw3Hx7Lm"),
];

/// Private servers that speak only TLS (and SASL) to bluetick, and a config that reaches them.
struct Secure {
    cfg: Config,
    pki: Pki,
    dir: PathBuf,
    /// (TLS port, plain port) of the broker behind stunnel.
    kafka_ports: (u16, u16),
    stunnel: Option<Stunnel>,
    _servers: (Broker, ClickHouseServer),
}

fn secure(sasl: bool) -> Secure {
    let dir = scratch_dir("transit");
    let pki = Pki::generate(&dir);
    let (plain, tls) = (free_port(), free_port());
    let kafka_dir = dir.join("kafka");
    std::fs::create_dir_all(&kafka_dir).expect("dir");
    if sasl {
        // The broker learns its SCRAM user first, then requires authentication.
        let open = Broker::start_with(&kafka_dir, plain, tls, false);
        open.create_user(SASL_USER, SASL_PASSWORD);
        open.stop();
    }
    let broker = Broker::start_with(&kafka_dir, plain, tls, sasl);
    let stunnel = Stunnel::start(&dir, tls, plain, &pki.cert, &pki.key);

    let https = free_port();
    let users = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/clickhouse/users.xml"
    ));
    let env = PASSWORDS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ch_dir = dir.join("clickhouse");
    std::fs::create_dir_all(&ch_dir).expect("dir");
    let clickhouse = ClickHouseServer::start_with(
        &ch_dir,
        free_port(),
        free_port(),
        ClickHouseExtras {
            https: Some((https, pki.cert.clone(), pki.key.clone())),
            users: Some((users, env)),
            ..Default::default()
        },
    );
    common::procs::wait_port(https, "ClickHouse HTTPS");

    let mut cfg = config();
    sink_config(&mut cfg);
    cfg.kafka.brokers = format!("localhost:{tls}");
    cfg.kafka.security_protocol = KafkaSecurity::Ssl;
    if sasl {
        cfg.kafka.security_protocol = KafkaSecurity::SaslSsl;
        cfg.kafka.sasl_mechanism = "SCRAM-SHA-256".into();
        cfg.kafka.sasl_username = SASL_USER.into();
        cfg.kafka.sasl_password = Secret(SASL_PASSWORD.into());
    }
    cfg.kafka.ssl_ca_file = pki.ca.to_string_lossy().into_owned();
    cfg.clickhouse.url = format!("https://localhost:{https}");
    cfg.clickhouse.ca_file = pki.ca.to_string_lossy().into_owned();
    Secure {
        cfg,
        pki,
        dir,
        kafka_ports: (tls, plain),
        stunnel: Some(stunnel),
        _servers: (broker, clickhouse),
    }
}

/// `cfg` as role `role` (admin, writer or reader) of `users.xml`.
fn as_role(cfg: &Config, role: &str) -> Config {
    let mut c = cfg.clone();
    c.clickhouse.user = format!("bluetick_{role}");
    let var = format!("BLUETICK_CH_{}_PASSWORD", role.to_uppercase());
    let password = PASSWORDS
        .iter()
        .find(|(k, _)| *k == var)
        .map(|(_, v)| *v)
        .expect("role");
    c.clickhouse.password = Secret(password.into());
    c
}

#[tokio::test]
async fn the_pipeline_runs_over_tls_and_sasl_and_each_role_can_do_only_its_job() {
    let s = secure(true);
    let admin = as_role(&s.cfg, "admin");
    let mut out = Vec::new();
    bluetick::migrate::run(&admin, &mut out)
        .await
        .expect("migrate as admin over HTTPS");
    bluetick::migrate::topics(&admin, &mut out)
        .await
        .expect("topics over SASL_SSL");

    let writer = as_role(&s.cfg, "writer");
    // The sink's init container: the writer may read the schema's state.
    bluetick::migrate::wait_applied(&writer, Duration::from_secs(10), &mut Vec::new())
        .await
        .expect("the writer sees every migration applied");
    let ingest = Server::start(&writer).await;
    let sink = Sink::start(&writer).await;
    let now = now_secs() - 60;
    let statuses: Vec<Status> = (0..50u64)
        .map(|i| Status {
            message_id: wamid(&format!("9199{:08}", i), &format!("TLS{i}")),
            status: "sent",
            ts: now + i,
            number: format!("9199{:08}", i),
        })
        .collect();
    assert_eq!(
        post_signed(ingest.addr, &status_body(&statuses))
            .await
            .status,
        200
    );
    let reader = as_role(&s.cfg, "reader");
    let sql = "SELECT count() FROM message_status";
    let rows = bluetick::clickhouse::ClickHouse::new(&reader.clickhouse).expect("client");
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0u64;
    while n < 50 && std::time::Instant::now() < deadline {
        n = match rows.client().query(sql).fetch_one().await {
            Ok(n) => n,
            Err(e) => panic!("the reader counts rows: {e}"),
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(n, 50, "every event landed over TLS");
    sink.stop().await;
    ingest.stop().await;

    // Least privilege, as ClickHouse itself enforces it.
    let refused = |cfg: &Config, sql: &'static str| {
        let ch = bluetick::clickhouse::ClickHouse::new(&cfg.clickhouse).expect("client");
        async move { ch.execute(sql).await.is_err() }
    };
    for sql in [
        "INSERT INTO message_status (event_id) VALUES ('x')",
        "ALTER TABLE message_status DELETE WHERE 1",
        "DROP TABLE message_status",
    ] {
        assert!(refused(&reader, sql).await, "the reader may not: {sql}");
    }
    assert!(
        refused(&writer, "DROP TABLE message_status").await,
        "the writer may not drop"
    );
    assert!(refused(&writer, "ALTER TABLE message_status DELETE WHERE 1").await);
    assert!(!refused(&writer, "INSERT INTO security_event (ts) VALUES (now())").await);
    // Retention and erase run as the admin; export and the audit as the reader.
    bluetick::retention::run(&admin, true, &mut Vec::new())
        .await
        .expect("retention as admin");
    let report = bluetick::audit::run(&reader, Default::default(), &mut Vec::new())
        .await
        .expect("the audit reads everything as the reader, over TLS");
    assert!(
        report.findings.iter().all(|f| f.check != "phone_number"),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_wrong_ca_stops_every_component_at_start_naming_the_setting() {
    let s = secure(false);
    let admin = as_role(&s.cfg, "admin");
    let wrong = s.pki.wrong_ca.to_string_lossy().into_owned();

    let mut kafka_wrong = admin.clone();
    kafka_wrong.kafka.ssl_ca_file = wrong.clone();
    let e = bluetick::migrate::topics(&kafka_wrong, &mut Vec::new())
        .await
        .expect_err("a broker certificate signed by another CA");
    assert!(e.to_string().contains("kafka.ssl_ca_file"), "{e}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let e = bluetick::ingest::run(&kafka_wrong, listener, std::future::pending())
        .await
        .expect_err("ingest stops at start");
    assert!(e.to_string().contains("kafka.ssl_ca_file"), "{e}");

    let mut ch_wrong = admin.clone();
    ch_wrong.clickhouse.ca_file = wrong;
    let e = bluetick::migrate::run(&ch_wrong, &mut Vec::new())
        .await
        .expect_err("a server certificate signed by another CA");
    assert!(e.to_string().contains("clickhouse.ca_file"), "{e}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let e = bluetick::sink::run(&ch_wrong, listener, std::future::pending())
        .await
        .expect_err("the sink stops at start");
    assert!(e.to_string().contains("clickhouse.ca_file"), "{e}");

    // Plaintext by mistake is refused before anything connects.
    let mut plain = admin.clone();
    plain.clickhouse.url = plain.clickhouse.url.replace("https://", "http://");
    let e = plain
        .check_clickhouse()
        .expect_err("a CA with an http:// URL");
    assert!(e.to_string().contains("plaintext"), "{e}");
}

#[tokio::test]
async fn readyz_names_a_broker_certificate_that_stops_verifying() {
    let mut s = secure(false);
    let admin = as_role(&s.cfg, "admin");
    bluetick::migrate::topics(&admin, &mut Vec::new())
        .await
        .expect("topics over TLS");
    let ingest = Server::start(&admin).await;
    assert_eq!(get(ingest.addr, "/readyz").await.status, 200);

    // The broker now presents a certificate from a CA bluetick was not told to trust.
    drop(s.stunnel.take());
    let (tls, plain) = s.kafka_ports;
    let impostor = s.dir.join("impostor");
    std::fs::create_dir_all(&impostor).expect("dir");
    s.stunnel = Some(Stunnel::start(
        &impostor,
        tls,
        plain,
        &s.pki.wrong_ca,
        &s.pki.wrong_ca_key,
    ));
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = get(ingest.addr, "/readyz").await;
    while last.body != "broker_tls_failed" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = get(ingest.addr, "/readyz").await;
    }
    assert_eq!(
        (last.status, last.body.as_str()),
        (503, "broker_tls_failed")
    );
    // And a webhook is not acked over it: Meta keeps the event and retries.
    let body = status_body(&[Status {
        message_id: wamid("919900000001", "IMPOSTOR"),
        status: "sent",
        ts: now_secs(),
        number: "919900000001".into(),
    }]);
    assert_eq!(post_signed(ingest.addr, &body).await.status, 503);
    ingest.stop().await;
}

#[tokio::test]
async fn wrong_sasl_credentials_are_refused_naming_the_setting() {
    let s = secure(true);
    let admin = as_role(&s.cfg, "admin");
    // Wrong credentials: named, and never echoed.
    let mut wrong = admin.clone();
    wrong.kafka.sasl_password = Secret("Wrong9pass8word7X".into());
    let e = bluetick::migrate::topics(&wrong, &mut Vec::new())
        .await
        .expect_err("refused credentials");
    let text = e.to_string();
    assert!(text.contains("kafka.sasl"), "{text}");
    assert!(
        !text.contains("Wrong9pass8word7X") && !text.contains(SASL_PASSWORD),
        "{text}"
    );

    // The processes themselves, with every secret set and debug logs on (librdkafka's own
    // included): what they print on the way to refusing to start holds none of them.
    let secrets = [
        ("BLUETICK_APP_SECRET", "Qw8Zx4Lp9Av3Ns6Dk2"),
        ("BLUETICK_VERIFY_TOKEN", "Mn7Bv2Cx5Gh4Jk8Lq1"),
        ("BLUETICK_PEPPER", "Hj3Kl9Qa2Ws5Ed8Rf1Tg"),
        ("BLUETICK_ID_KEY", "Tg8Yh1Uj6Ik3Ol9Pz4Xc"),
        ("BLUETICK_KAFKA_SASL_PASSWORD", "Wrong9pass8word7X"),
        ("BLUETICK_CLICKHOUSE_PASSWORD", "Rf8Ed3Ws5Qa1Zx7Cv2Bn"),
    ];
    let base = [
        ("BLUETICK_LOG", "debug".to_string()),
        ("BLUETICK_KAFKA_DEBUG", "security,broker,conf".to_string()),
        ("BLUETICK_KAFKA_BROKERS", admin.kafka.brokers.clone()),
        ("BLUETICK_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_string()),
        ("BLUETICK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256".to_string()),
        ("BLUETICK_KAFKA_SASL_USERNAME", SASL_USER.to_string()),
        (
            "BLUETICK_KAFKA_SSL_CA_FILE",
            admin.kafka.ssl_ca_file.clone(),
        ),
        ("BLUETICK_CLICKHOUSE_URL", admin.clickhouse.url.clone()),
        (
            "BLUETICK_CLICKHOUSE_CA_FILE",
            admin.clickhouse.ca_file.clone(),
        ),
        ("BLUETICK_CLICKHOUSE_USER", "bluetick_writer".to_string()),
        ("BLUETICK_INGEST_METRICS_LISTEN", "127.0.0.1:0".to_string()),
        ("BLUETICK_SINK_LISTEN", "127.0.0.1:0".to_string()),
    ];
    for args in [
        &["ingest", "--listen", "127.0.0.1:0"][..],
        &["sink"],
        &["audit"],
        &["ingest", "--help"],
        &["--help"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bluetick"))
            .args(args)
            .env_clear()
            .envs(base.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(secrets)
            .output()
            .expect("run bluetick");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if args[args.len() - 1] != "--help" {
            assert!(
                !out.status.success(),
                "{args:?} started with refused credentials"
            );
            assert!(
                text.contains("kafka.sasl") || text.contains("clickhouse"),
                "{text}"
            );
        }
        for (var, value) in secrets {
            assert!(
                !text.contains(value),
                "bluetick {args:?} printed {var}:\n{text}"
            );
        }
    }
}
