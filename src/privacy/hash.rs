//! Keyed hashes: of a person's identifiers under the pepper ([`Pepper`]: a phone number's
//! digits, or a business-scoped user id), and of Meta's ids under the id key ([`IdKey`]:
//! message, call and group ids, which carry phone numbers in clear).
//!
//! Both keys are server-side secrets, so a hash cannot be reversed by hashing every candidate
//! (a plain SHA-256 of a 12-digit number space falls in minutes). The keyed state is prepared
//! once; each hash clones it, costing two or three SHA-256 blocks.

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
    pub fn hash_digits(&self, digits: &str) -> PersonHash {
        let mut mac = self.keyed.clone();
        mac.update(digits.as_bytes());
        PersonHash(mac.finalize().into_bytes().into())
    }

    /// Hashes a number in any formatting.
    pub fn hash_phone(&self, raw: &str) -> PersonHash {
        self.hash_digits(super::normalize(raw).as_str())
    }

    /// Hashes a business-scoped user id (`US.13491208655302741918`), as given. The `u:`
    /// prefix keeps the two kinds of identifier apart: no user id hashes like a number.
    pub fn hash_user(&self, user_id: &str) -> PersonHash {
        let mut mac = self.keyed.clone();
        mac.update(b"u:");
        mac.update(user_id.trim().as_bytes());
        PersonHash(mac.finalize().into_bytes().into())
    }
}

/// The key of the pseudonyms that replace Meta's message, call and group ids.
///
/// A pseudonym is the first 16 bytes of HMAC-SHA256(id key, the id's UTF-8 bytes as Meta
/// sends them), written as 32 lower-case hex digits. The same id always gives the same
/// pseudonym, so deduplication, the latest status of a message and joins keep working; a BSP
/// computes it in its own systems (or with `bluetick message-key`) to join its send log.
#[derive(Clone)]
pub struct IdKey {
    keyed: Hmac<Sha256>,
    /// The key as HMAC uses it (hashed if longer than a block), for [`IdKey::pads`].
    block_key: [u8; 64],
}

impl IdKey {
    pub fn new(secret: &[u8]) -> Self {
        let keyed = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
        let mut block_key = [0u8; 64];
        if secret.len() > 64 {
            block_key[..32].copy_from_slice(&<Sha256 as sha2::Digest>::digest(secret));
        } else {
            block_key[..secret.len()].copy_from_slice(secret);
        }
        IdKey { keyed, block_key }
    }

    /// The pseudonym of `raw` (a `wamid.…`, `wacid.…` or group id, as Meta sent it).
    pub fn pseudonym(&self, raw: &str) -> Pseudonym {
        let mut mac = self.keyed.clone();
        mac.update(raw.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Pseudonym(out)
    }

    /// The key XOR HMAC's inner and outer pads (RFC 2104), so that a pseudonym can also be
    /// computed where only SHA-256 exists: `H(opad ‖ H(ipad ‖ id))`, first 16 bytes.
    pub fn pads(&self) -> ([u8; 64], [u8; 64]) {
        (
            self.block_key.map(|b| b ^ 0x36),
            self.block_key.map(|b| b ^ 0x5c),
        )
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(<redacted>)")
    }
}

/// A keyed pseudonym of one of Meta's ids: 128 bits, hex on the wire and in ClickHouse.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pseudonym(pub [u8; 16]);

impl Pseudonym {
    pub fn to_hex(&self) -> HexBuf<32> {
        let mut out = HexBuf([0; 32]);
        // The buffer is exactly twice the input length, so encoding cannot fail.
        let _ = faster_hex::hex_encode(&self.0, &mut out.0);
        out
    }

    /// Exactly 32 lower- or upper-case hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        decode_hex(s).map(Pseudonym)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for Pseudonym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        Pseudonym::from_hex(s).ok_or_else(|| serde::de::Error::custom("not a 32-digit hex key"))
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(<redacted>)")
    }
}

/// A keyed hash of one of a person's identifiers (phone digits or user id), 256 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonHash(pub [u8; 32]);

impl PersonHash {
    /// Lower-case hex, 64 characters, written into a stack buffer.
    pub fn to_hex(&self) -> HexBuf<64> {
        let mut out = HexBuf([0; 64]);
        // The buffer is exactly twice the input length, so encoding cannot fail.
        let _ = faster_hex::hex_encode(&self.0, &mut out.0);
        out
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        decode_hex(s).map(PersonHash)
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

impl fmt::Debug for PersonHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl fmt::Display for PersonHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl Serialize for PersonHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_hex().as_str())
    }
}

impl<'de> Deserialize<'de> for PersonHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&str>::deserialize(d)?;
        PersonHash::from_hex(s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex hash"))
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
    fn user_ids_never_hash_like_numbers() {
        let p = Pepper::new(b"pepper-one");
        assert_ne!(p.hash_user("1234567890"), p.hash_phone("1234567890"));
        assert_eq!(p.hash_user(" US.1349 "), p.hash_user("US.1349"));
    }

    #[test]
    fn pseudonyms_are_truncated_hmac_and_the_pads_reproduce_them() {
        use sha2::Digest;
        for secret in [&b"id-key-0123456789abcdef"[..], &[7u8; 100][..]] {
            let key = IdKey::new(secret);
            let id = "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI3MDA4RjU3QkRCQUM2QkQ5QjUA";
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
            mac.update(id.as_bytes());
            let full = mac.finalize().into_bytes();
            assert_eq!(key.pseudonym(id).0, full[..16]);
            // What `bluetick migrate` computes in SQL with SHA256 only.
            let (ipad, opad) = key.pads();
            let inner = Sha256::new().chain_update(ipad).chain_update(id).finalize();
            let outer = Sha256::new()
                .chain_update(opad)
                .chain_update(inner)
                .finalize();
            assert_eq!(key.pseudonym(id).0, outer[..16]);
        }
        let p = IdKey::new(b"k").pseudonym("x");
        assert_eq!(Pseudonym::from_hex(p.to_hex().as_str()), Some(p));
        assert_ne!(p, IdKey::new(b"j").pseudonym("x"));
    }

    #[test]
    fn hex_round_trips() {
        let h = Pepper::new(b"k").hash_phone("15551234567");
        let hex = h.to_hex();
        assert_eq!(PersonHash::from_hex(hex.as_str()), Some(h));
        assert_eq!(hex.as_str().len(), 64);
        assert!(hex
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        let longer = format!("{}00", hex.as_str());
        for bad in [&hex.as_str()[..62], longer.as_str(), &"g".repeat(64)] {
            assert_eq!(PersonHash::from_hex(bad), None, "{bad}");
        }
    }
}
