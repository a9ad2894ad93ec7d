//! `X-Hub-Signature-256` check: HMAC-SHA256(app secret, raw body bytes), compared in constant
//! time, before any byte of the body is parsed.
//!
//! Up to two secrets are accepted so an app secret can be rotated without refusing traffic
//! signed with the old one. Keyed states are prepared once at start.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// Stable label for metrics and security events.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed => "malformed_signature",
            SignatureError::Mismatch => "bad_signature",
        }
    }
}

pub struct Verifier {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl Verifier {
    /// `previous` is the secret being rotated out; an empty one is ignored.
    pub fn new(current: &[u8], previous: &[u8]) -> Self {
        let key = |k: &[u8]| Hmac::<Sha256>::new_from_slice(k).expect("HMAC takes any key length");
        Verifier {
            current: key(current),
            previous: (!previous.is_empty()).then(|| key(previous)),
        }
    }

    /// Checks `header` (the raw header value) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let matches = |keyed: &Hmac<Sha256>| {
            let mut mac = keyed.clone();
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        };
        if matches(&self.current) || self.previous.as_ref().is_some_and(matches) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// `sha256=<hex>` for `body` under `secret`: what Meta sends (used by tests and the load
/// generator).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    #[test]
    fn accepts_the_current_and_previous_secret() {
        let v = Verifier::new(b"new", b"old");
        assert_eq!(v.verify(Some(sign(b"new", BODY).as_bytes()), BODY), Ok(()));
        assert_eq!(v.verify(Some(sign(b"old", BODY).as_bytes()), BODY), Ok(()));
        assert_eq!(
            v.verify(Some(sign(b"other", BODY).as_bytes()), BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let v = Verifier::new(b"k", b"");
        let sig = sign(b"k", BODY)
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        assert_eq!(v.verify(Some(sig.as_bytes()), BODY), Ok(()));
    }

    #[test]
    fn a_changed_byte_fails() {
        let v = Verifier::new(b"k", b"");
        let sig = sign(b"k", BODY);
        let mut body = BODY.to_vec();
        body[3] ^= 1;
        assert_eq!(
            v.verify(Some(sig.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bad_headers_are_classified() {
        let v = Verifier::new(b"k", b"");
        assert_eq!(v.verify(None, BODY), Err(SignatureError::Missing));
        assert_eq!(
            v.verify(Some(b"md5=abc"), BODY),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some(b"sha256=zz"), BODY),
            Err(SignatureError::Malformed)
        );
        let truncated = &sign(b"k", BODY)[..40];
        assert_eq!(
            v.verify(Some(truncated.as_bytes()), BODY),
            Err(SignatureError::Malformed)
        );
    }
}
