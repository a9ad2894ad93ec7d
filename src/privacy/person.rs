//! A person as bluetick keeps them ([`Person`]: never the number itself), and as an operator
//! names them to `erase` or `export` ([`PersonRef`]: a number or the hash of one).

use super::{normalize, MaskedPhone, Pepper, PhoneHash};

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

#[derive(Debug, thiserror::Error)]
pub enum PersonError {
    #[error("{source_name} line {line}: {value:?} is neither a phone number nor a 64-digit hash")]
    Unrecognized {
        source_name: String,
        line: usize,
        value: String,
    },
    #[error("no person given: use --phone, --hash or --from-file")]
    NoneGiven,
}

/// A person named on the command line or in a file: a phone number (any formatting) or the
/// keyed hash of one (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonRef {
    Phone(String),
    Hash(PhoneHash),
}

impl PersonRef {
    /// Reads one entry: 64 hex digits are a hash, 6–20 digits (with `+`, spaces, dashes,
    /// parentheses) a phone number; anything else is refused.
    pub fn parse(text: &str) -> Option<PersonRef> {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return PhoneHash::from_hex(&t.to_ascii_lowercase()).map(PersonRef::Hash);
        }
        let allowed = t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')' | b'.'));
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        (allowed && (6..=20).contains(&digits)).then(|| PersonRef::Phone(t.to_string()))
    }

    /// Reads a list: one entry per line; blank lines and `#` comments are skipped.
    pub fn parse_list(source_name: &str, text: &str) -> Result<Vec<PersonRef>, PersonError> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            out.push(
                PersonRef::parse(entry).ok_or_else(|| PersonError::Unrecognized {
                    source_name: source_name.to_string(),
                    line: i + 1,
                    value: entry.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// The hashes to search for: each number under every pepper given (current first, then the
/// one before a rotation), each hash as is; duplicates removed.
pub fn hashes_of(people: &[PersonRef], peppers: &[&Pepper]) -> Result<Vec<PhoneHash>, PersonError> {
    if people.is_empty() {
        return Err(PersonError::NoneGiven);
    }
    let mut out: Vec<PhoneHash> = Vec::new();
    for p in people {
        let found: Vec<PhoneHash> = match p {
            PersonRef::Hash(h) => vec![*h],
            PersonRef::Phone(n) => peppers.iter().map(|k| k.hash_phone(n)).collect(),
        };
        for h in found {
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod person_tests {
    use super::*;

    #[test]
    fn entries_are_numbers_or_hashes_and_nothing_else() {
        let pepper = Pepper::new(b"pepper-pepper-pepper");
        let hash = pepper.hash_phone("919876544321").to_hex();
        assert_eq!(
            PersonRef::parse("+91 98765-44321"),
            Some(PersonRef::Phone("+91 98765-44321".into()))
        );
        assert!(matches!(
            PersonRef::parse(hash.as_str()),
            Some(PersonRef::Hash(_))
        ));
        assert_eq!(PersonRef::parse("robert'); DROP TABLE"), None);
        assert_eq!(PersonRef::parse("123"), None);
        let e = PersonRef::parse_list("list.txt", "# people\n919876544321\n\nnope\n")
            .expect_err("bad line");
        assert!(e.to_string().contains("list.txt line 4"), "{e}");
    }

    #[test]
    fn a_number_is_searched_under_both_peppers_once() {
        let (now, before) = (
            Pepper::new(b"new-pepper-0123456"),
            Pepper::new(b"old-pepper-0123456"),
        );
        let people = [
            PersonRef::Phone("+91 98765 44321".into()),
            PersonRef::Phone("919876544321".into()),
        ];
        let hashes = hashes_of(&people, &[&now, &before]).expect("hashes");
        assert_eq!(
            hashes,
            [
                now.hash_phone("919876544321"),
                before.hash_phone("919876544321")
            ]
        );
        assert!(matches!(
            hashes_of(&[], &[&now]),
            Err(PersonError::NoneGiven)
        ));
    }
}
