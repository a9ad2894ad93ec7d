//! The one table from a refused request to what the client sees: HTTP status and a short,
//! stable code (the response body and the `outcome` label). Details go to logs; secrets,
//! signatures and payloads never do.

use super::verify::SignatureError;
use crate::kafka::{ProduceError, Refusal};
use http::StatusCode;

/// Why a request was not accepted. [`RequestError::status`] is the whole client contract.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("verify token does not match")]
    BadVerifyToken,
    #[error("body larger than the limit")]
    TooLarge,
    #[error("content type is not application/json")]
    UnsupportedMediaType,
    #[error("client did not send the body in time")]
    BodyTimeout,
    #[error("reading the body: {0}")]
    BodyRead(hyper::Error),
    #[error("too many requests in progress")]
    Overloaded,
    #[error("too many bytes of large bodies in progress")]
    BodiesInFlight,
    #[error("producing: {0}")]
    Produce(#[from] ProduceError),
    #[error("broker not reachable")]
    NotReady,
    /// The brokers refused TLS or SASL: a setting is wrong (logged with the broker's reason).
    #[error("broker refused the connection: {0:?}")]
    BrokerRefused(Refusal),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl RequestError {
    /// What the client sees. 503s carry `Retry-After`: Meta retries, nothing is lost.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Signature(_) => StatusCode::UNAUTHORIZED,
            RequestError::BadVerifyToken => StatusCode::FORBIDDEN,
            RequestError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RequestError::BodyRead(_) => StatusCode::BAD_REQUEST,
            RequestError::Overloaded
            | RequestError::BodiesInFlight
            | RequestError::NotReady
            | RequestError::BrokerRefused(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A record too large for the broker can never be written; anything else may pass
            // on a retry.
            RequestError::Produce(ProduceError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Produce(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Short stable code for the response body and the `outcome` label; details go to logs.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Signature(e) => e.reason(),
            RequestError::BadVerifyToken => "bad_verify_token",
            RequestError::TooLarge => "body_too_large",
            RequestError::UnsupportedMediaType => "unsupported_content_type",
            RequestError::BodyTimeout => "body_timeout",
            RequestError::BodyRead(_) => "body_read_failed",
            RequestError::Overloaded => "overloaded",
            RequestError::BodiesInFlight => "bodies_in_flight",
            RequestError::Produce(ProduceError::QueueFull) => "queue_full",
            RequestError::Produce(ProduceError::TooLarge) => "record_too_large",
            RequestError::Produce(ProduceError::Timeout) => "broker_timeout",
            RequestError::Produce(ProduceError::Failed(_)) => "broker_unavailable",
            RequestError::NotReady => "not_ready",
            RequestError::BrokerRefused(Refusal::Tls) => "broker_tls_failed",
            RequestError::BrokerRefused(Refusal::Auth) => "broker_auth_failed",
            RequestError::NotFound => "not_found",
            RequestError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        use ProduceError as P;
        let table: Vec<(RequestError, u16, &str)> = vec![
            (SignatureError::Missing.into(), 401, "missing_signature"),
            (SignatureError::Malformed.into(), 401, "malformed_signature"),
            (SignatureError::Mismatch.into(), 401, "bad_signature"),
            (RequestError::BadVerifyToken, 403, "bad_verify_token"),
            (RequestError::TooLarge, 413, "body_too_large"),
            (
                RequestError::UnsupportedMediaType,
                415,
                "unsupported_content_type",
            ),
            (RequestError::BodyTimeout, 408, "body_timeout"),
            (RequestError::Overloaded, 503, "overloaded"),
            (RequestError::BodiesInFlight, 503, "bodies_in_flight"),
            (P::QueueFull.into(), 503, "queue_full"),
            (P::Timeout.into(), 503, "broker_timeout"),
            (
                P::Failed(rdkafka::error::KafkaError::Canceled).into(),
                503,
                "broker_unavailable",
            ),
            (P::TooLarge.into(), 413, "record_too_large"),
            (RequestError::NotReady, 503, "not_ready"),
            (
                RequestError::BrokerRefused(Refusal::Tls),
                503,
                "broker_tls_failed",
            ),
            (
                RequestError::BrokerRefused(Refusal::Auth),
                503,
                "broker_auth_failed",
            ),
            (RequestError::NotFound, 404, "not_found"),
            (RequestError::MethodNotAllowed, 405, "method_not_allowed"),
        ];
        for (err, status, code) in table {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.code(), code, "{err}");
        }
    }
}
