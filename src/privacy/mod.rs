//! Personal data handling: phone numbers become a masked display form plus a keyed hash
//! before anything leaves the ingest process. The hash lets a person's rows be found for
//! erasure or export without storing the number.

pub mod hash;
pub mod mask;

pub use hash::{Pepper, PhoneHash};
pub use mask::{normalize, MaskedPhone};

/// A phone number as bluetick keeps it: never the number itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person {
    pub masked: MaskedPhone,
    pub hash: PhoneHash,
}

impl Person {
    /// Masks and hashes `raw` (any formatting; digits are what count).
    pub fn protect(pepper: &Pepper, raw: &str) -> Self {
        let digits = normalize(raw);
        Person {
            masked: MaskedPhone::from_digits(digits.as_str()),
            hash: pepper.hash_digits(digits.as_str()),
        }
    }
}
