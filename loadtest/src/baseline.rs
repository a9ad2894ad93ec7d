//! Reference (b): the webhook receiver a BSP would write with mainstream tools. axum, the
//! signature checked with the `hmac` crate, the body parsed into `serde_json::Value`, every
//! status and inbound message re-serialized with the number masked and produced to Kafka with
//! the same producer settings as bluetick (idempotent, `acks=all`, zstd level 1, linger 5 ms), and a
//! 200 after every record is acked. It is what bluetick's per-CPU-second figures are compared
//! with; it is not hardened (no body limit beyond axum's default, no backpressure answer).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use tokio::net::TcpListener;

struct App {
    secret: Vec<u8>,
    producer: FutureProducer,
    topic: String,
}

pub async fn serve(
    listener: TcpListener,
    secret: &[u8],
    brokers: &str,
    topic: &str,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("compression.level", "1")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .create()?;
    let app = Arc::new(App {
        secret: secret.to_vec(),
        producer,
        topic: topic.to_string(),
    });
    let router = Router::new()
        .route("/webhook", post(webhook))
        .with_state(app);
    axum::serve(listener, router).await?;
    Ok(())
}

async fn webhook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let Some(signature) = signature else {
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&app.secret) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    mac.update(&body);
    if mac.verify_slice(&signature).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut records = Vec::new();
    for entry in payload["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            for status in value["statuses"].as_array().into_iter().flatten() {
                let mut record = status.clone();
                mask(&mut record, "recipient_id");
                records.push(record);
            }
            for message in value["messages"].as_array().into_iter().flatten() {
                let mut record = serde_json::json!({
                    "id": message["id"], "from": message["from"],
                    "timestamp": message["timestamp"], "type": message["type"],
                });
                mask(&mut record, "from");
                records.push(record);
            }
            if value["statuses"].is_null() && value["messages"].is_null() {
                records.push(serde_json::json!({"field": change["field"], "waba": entry["id"]}));
            }
        }
    }
    // Enqueue every record first, then wait for the acks: one round trip per request.
    let mut acks = Vec::with_capacity(records.len());
    for record in &records {
        let Ok(bytes) = serde_json::to_vec(record) else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        let key = record["id"].as_str().unwrap_or_default();
        match app
            .producer
            .send_result(FutureRecord::to(&app.topic).key(key).payload(&bytes))
        {
            Ok(ack) => acks.push(ack),
            Err(_) => return StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    for ack in acks {
        if !matches!(ack.await, Ok(Ok(_))) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    StatusCode::OK
}

/// `919876544321` -> `91XXXXXX4321`.
fn mask(record: &mut Value, field: &str) {
    if let Some(number) = record[field].as_str() {
        let n = number.chars().count();
        let masked: String = number
            .chars()
            .enumerate()
            .map(|(i, c)| if i < 2 || i + 4 >= n { c } else { 'X' })
            .collect();
        record[field] = Value::String(masked);
    }
}
