//! Keyed hash of a phone number: HMAC-SHA256(pepper, E.164 digits), hex-encoded.
//!
//! The pepper is a server-side secret, so the hash cannot be reversed by hashing every
//! possible number (a plain SHA-256 of a 12-digit space falls in minutes). The keyed state is
//! prepared once; each hash clones it, costing two SHA-256 blocks.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use std::fmt;

#[derive(Clone)]
pub struct Pepper {
    keyed: Hmac<Sha256>,
}

impl Pepper {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length; this cannot fail.
        let keyed = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
        Pepper { keyed }
    }

    /// Hashes already-normalized digits (see [`super::normalize`]).
    pub fn hash_digits(&self, digits: &str) -> PhoneHash {
        let mut mac = self.keyed.clone();
        mac.update(digits.as_bytes());
        PhoneHash(mac.finalize().into_bytes().into())
    }

    /// Hashes a number in any formatting.
    pub fn hash_phone(&self, raw: &str) -> PhoneHash {
        self.hash_digits(super::normalize(raw).as_str())
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PhoneHash(pub [u8; 32]);

impl PhoneHash {
    /// Lower-case hex, 64 characters, written into a stack buffer.
    pub fn to_hex(&self) -> HexBuf<64> {
        let mut out = HexBuf([0; 64]);
        // The buffer is exactly twice the input length, so encoding cannot fail.
        let _ = faster_hex::hex_encode(&self.0, &mut out.0);
        out
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        decode_hex(s).map(PhoneHash)
    }
}

/// Exactly `N` bytes written as `2 * N` hex digits; anything else is `None`. faster-hex rather
/// than hex: decoding ids and person hashes was ~13 % of the sink's CPU with the latter.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    if s.len() != 2 * N {
        return None;
    }
    faster_hex::hex_decode(s.as_bytes(), &mut b).ok()?;
    Some(b)
}

/// Hex text on the stack.
pub struct HexBuf<const N: usize>(pub [u8; N]);

impl<const N: usize> HexBuf<N> {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for PhoneHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Display for PhoneHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl Serialize for PhoneHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for PhoneHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        PhoneHash::from_hex(s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_number_any_format_same_hash() {
        let p = Pepper::new(b"pepper-one");
        assert_eq!(
            p.hash_phone("+91 98765 44321"),
            p.hash_phone("919876544321")
        );
    }

    #[test]
    fn hash_depends_on_pepper_and_is_hmac_sha256() {
        let a = Pepper::new(b"pepper-one").hash_phone("919876544321");
        let b = Pepper::new(b"pepper-two").hash_phone("919876544321");
        assert_ne!(a, b);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"pepper-one").expect("key");
        mac.update(b"919876544321");
        assert_eq!(a.0, <[u8; 32]>::from(mac.finalize().into_bytes()));
    }

    #[test]
    fn hex_round_trips() {
        let h = Pepper::new(b"k").hash_phone("15551234567");
        let hex = h.to_hex();
        assert_eq!(PhoneHash::from_hex(hex.as_str()), Some(h));
        assert_eq!(hex.as_str().len(), 64);
        assert!(hex
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        let longer = format!("{}00", hex.as_str());
        for bad in [&hex.as_str()[..62], longer.as_str(), &"g".repeat(64)] {
            assert_eq!(PhoneHash::from_hex(bad), None, "{bad}");
        }
    }
}
