//! A person as bluetick keeps them ([`Person`]: never the number itself), and as an operator
//! names them to `erase` or `export` ([`PersonRef`]: a number, a business-scoped user id, or
//! the keyed hash of either).

use super::{normalize, MaskedPhone, Pepper, PersonHash};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person {
    pub masked: MaskedPhone,
    pub hash: PersonHash,
    /// The number's country calling code, if assigned: the market, not the person.
    pub country_code: Option<&'static str>,
}

impl Person {
    /// Masks and hashes `raw` (any formatting; digits are what count).
    pub fn protect(pepper: &Pepper, raw: &str) -> Self {
        let digits = normalize(raw);
        Person {
            masked: MaskedPhone::from_digits(digits.as_str()),
            hash: pepper.hash_digits(digits.as_str()),
            country_code: super::calling_code::calling_code(digits.as_str()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersonError {
    /// The value is not echoed: it may be a phone number, which must not reach a log.
    #[error("{source_name} line {line}: neither a phone number, a user id (CC.…) nor a 64-digit hash ({len} characters)")]
    Unrecognized {
        source_name: String,
        line: usize,
        len: usize,
    },
    #[error("no person given: use --phone, --user-id, --hash, --from-file or --stdin")]
    NoneGiven,
}

/// A person named on the command line or in a file: a phone number (any formatting), a
/// business-scoped user id (`US.1349…`, parent ids `US.ENT.…` too), or the keyed hash of
/// either (64 hex digits).
#[derive(Clone, PartialEq, Eq)]
pub enum PersonRef {
    Phone(String),
    User(String),
    Hash(PersonHash),
}

impl std::fmt::Debug for PersonRef {
    /// Never the number or user id itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersonRef::Phone(p) => write!(
                f,
                "Phone({})",
                MaskedPhone::from_digits(normalize(p).as_str())
            ),
            PersonRef::User(_) => f.write_str("User(<redacted>)"),
            PersonRef::Hash(h) => write!(f, "Hash({h})"),
        }
    }
}

impl PersonRef {
    /// Reads one entry: 64 hex digits are a hash, two capital letters and a dot a user id,
    /// 6–20 digits (with `+`, spaces, dashes, parentheses) a phone number; anything else is
    /// refused.
    pub fn parse(text: &str) -> Option<PersonRef> {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return PersonHash::from_hex(&t.to_ascii_lowercase()).map(PersonRef::Hash);
        }
        if is_user_id(t) {
            return Some(PersonRef::User(t.to_string()));
        }
        let allowed = t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'(' | b')' | b'.'));
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        (allowed && (6..=20).contains(&digits)).then(|| PersonRef::Phone(t.to_string()))
    }

    /// Reads a value given as a user id (`--user-id`): refused unless it has that shape.
    pub fn user(text: &str) -> Option<PersonRef> {
        let t = text.trim();
        is_user_id(t).then(|| PersonRef::User(t.to_string()))
    }

    /// Reads a value given as a phone number (`--phone`).
    pub fn phone(text: &str) -> Option<PersonRef> {
        PersonRef::parse(text).filter(|r| matches!(r, PersonRef::Phone(_)))
    }

    /// Reads a value given as a keyed hash (`--hash`).
    pub fn hash(text: &str) -> Option<PersonRef> {
        PersonRef::parse(text).filter(|r| matches!(r, PersonRef::Hash(_)))
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
                    len: entry.chars().count(),
                })?,
            );
        }
        Ok(out)
    }
}

/// Whether `t` is shaped like a business-scoped user id: `CC.<id>` or `CC.ENT.<id>`, the
/// country code two capital letters, the id letters and digits.
pub fn is_user_id(t: &str) -> bool {
    let mut parts = t.split('.');
    let (Some(cc), Some(mut id)) = (parts.next(), parts.next()) else {
        return false;
    };
    if id == "ENT" {
        id = parts.next().unwrap_or_default();
    }
    parts.next().is_none()
        && cc.len() == 2
        && cc.bytes().all(|c| c.is_ascii_uppercase())
        && !id.is_empty()
        && id.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// The hashes to search for: each number or user id under every pepper given (current first,
/// then the one before a rotation), each hash as is; duplicates removed.
pub fn hashes_of(
    people: &[PersonRef],
    peppers: &[&Pepper],
) -> Result<Vec<PersonHash>, PersonError> {
    if people.is_empty() {
        return Err(PersonError::NoneGiven);
    }
    let mut out: Vec<PersonHash> = Vec::new();
    for p in people {
        let found: Vec<PersonHash> = match p {
            PersonRef::Hash(h) => vec![*h],
            PersonRef::Phone(n) => peppers.iter().map(|k| k.hash_phone(n)).collect(),
            PersonRef::User(u) => peppers.iter().map(|k| k.hash_user(u)).collect(),
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
        assert_eq!(
            PersonRef::parse("US.13491208655302741918"),
            Some(PersonRef::User("US.13491208655302741918".into()))
        );
        assert!(PersonRef::user("US.ENT.11815799212886844830").is_some());
        assert_eq!(PersonRef::user("919876544321"), None);
        let e = PersonRef::parse_list("list.txt", "# people\n919876544321\n\nnope 91987654\n")
            .expect_err("bad line");
        assert!(e.to_string().contains("list.txt line 4"), "{e}");
        assert!(
            !e.to_string().contains("91987654"),
            "never echoes the value: {e}"
        );
        let shown = format!("{:?}", PersonRef::parse("919876544321"));
        assert!(!shown.contains("919876544321"), "{shown}");
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
