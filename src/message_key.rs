//! `bluetick message-key`: Meta's ids (`wamid.…`, `wacid.…`, group ids) → the pseudonyms
//! bluetick stores in their place, so a BSP can join its rows with its own send log (which
//! holds the raw ids the send API returned).
//!
//! The computation, to run it in one's own systems instead: the first 16 bytes of
//! HMAC-SHA256(id key, the id's UTF-8 bytes exactly as Meta sent it), as 32 lower-case hex
//! digits. The id key is `privacy.id_key` (`BLUETICK_ID_KEY`), not the pepper.

use crate::privacy::IdKey;
use std::io::{BufRead, Write};

#[derive(Debug, thiserror::Error)]
pub enum MessageKeyError {
    #[error("reading ids: {0}")]
    Read(std::io::Error),
    #[error("writing keys: {0}")]
    Write(std::io::Error),
}

/// How each key is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The key alone, one per line, in input order.
    Key,
    /// `id<TAB>key`.
    Pair,
}

/// Writes the key of every id in `ids`, or, when it is empty, of every non-blank line of
/// `input`. Returns how many ids were keyed.
pub fn run(
    key: &IdKey,
    ids: &[String],
    input: &mut dyn BufRead,
    output: Output,
    out: &mut dyn Write,
) -> Result<u64, MessageKeyError> {
    let mut n = 0;
    let mut write = |id: &str| -> Result<(), MessageKeyError> {
        let k = key.pseudonym(id);
        match output {
            Output::Key => writeln!(out, "{k}"),
            Output::Pair => writeln!(out, "{id}\t{k}"),
        }
        .map_err(MessageKeyError::Write)?;
        n += 1;
        Ok(())
    };
    if ids.is_empty() {
        for line in input.lines() {
            let line = line.map_err(MessageKeyError::Read)?;
            let id = line.trim();
            if !id.is_empty() {
                write(id)?;
            }
        }
    } else {
        for id in ids {
            write(id.trim())?;
        }
    }
    out.flush().map_err(MessageKeyError::Write)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_arguments_or_lines_map_to_their_pseudonyms() {
        let key = IdKey::new(b"id-key-0123456789abcdef");
        let mut out = Vec::new();
        let n = run(
            &key,
            &[],
            &mut "wamid.A\n\n  wamid.B \n".as_bytes(),
            Output::Pair,
            &mut out,
        )
        .expect("keys");
        assert_eq!(n, 2);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            format!(
                "wamid.A\t{}\nwamid.B\t{}\n",
                key.pseudonym("wamid.A"),
                key.pseudonym("wamid.B")
            )
        );
        let mut out = Vec::new();
        run(
            &key,
            &["wamid.A".into()],
            &mut "".as_bytes(),
            Output::Key,
            &mut out,
        )
        .expect("keys");
        assert_eq!(out, format!("{}\n", key.pseudonym("wamid.A")).into_bytes());
    }
}
