//! `bluetick rate-card load FILE.csv`: the price of a billable message per market and pricing
//! category, from a date on, for the estimated spend (`spend_daily`).
//!
//! The file is the whole card: loading it replaces the previous one. Each line is
//! `country_code,pricing_category,effective_from,currency,price` (a `#` starts a comment; a
//! header line naming the columns is allowed), e.g. `91,marketing,2026-01-01,INR,0.7846`.
//! Prices are kept in millionths of the currency unit, so sums of many messages stay exact. A
//! rate applies from its date until the next rate of the same market and category, the last
//! one for [`HORIZON_DAYS`] after it (load the card again to extend it). Every line is
//! checked before anything is written; an error names the line and what is wrong with it.

use crate::clickhouse::{quote_literal, ClickHouse, ClickHouseError};
use crate::config::Config;
use crate::model::tables::yyyymmdd;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// How long the last rate of a market and category is taken to apply.
pub const HORIZON_DAYS: u64 = 730;

#[derive(Debug, thiserror::Error)]
pub enum RateCardError {
    #[error("{path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no rates in it")]
    Empty(String),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("writing progress: {0}")]
    Io(#[from] std::io::Error),
}

/// One line of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub country_code: String,
    pub pricing_category: String,
    /// Days since the epoch.
    pub effective_from: u64,
    pub currency: String,
    pub price_micros: u64,
}

/// Parses a card; every problem is reported with its line.
pub fn parse(path: &str, text: &str) -> Result<Vec<Rate>, RateCardError> {
    let mut rates = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("country_code") {
            continue;
        }
        let bad = |reason: String| RateCardError::Line {
            path: path.to_string(),
            line: i + 1,
            reason,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [cc, category, from, currency, price] = fields[..] else {
            return Err(bad(format!(
                "{} fields; expected country_code,pricing_category,effective_from,currency,price",
                fields.len()
            )));
        };
        if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "country code {cc:?} is not 1-3 digits (91, 44, 1, ...)"
            )));
        }
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !word(category) {
            return Err(bad(format!(
                "pricing category {category:?}: use Meta's names (marketing, utility, authentication, ...)"
            )));
        }
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(format!(
                "currency {currency:?} is not an ISO code (INR, USD, ...)"
            )));
        }
        rates.push(Rate {
            country_code: cc.to_string(),
            pricing_category: category.to_string(),
            effective_from: day_of(from)
                .ok_or_else(|| bad(format!("date {from:?} is not YYYY-MM-DD")))?,
            currency: currency.to_string(),
            price_micros: micros(price).ok_or_else(|| {
                bad(format!(
                    "price {price:?} is not a decimal with at most 6 decimals"
                ))
            })?,
        });
    }
    if rates.is_empty() {
        return Err(RateCardError::Empty(path.to_string()));
    }
    Ok(rates)
}

/// `YYYY-MM-DD` as days since the epoch.
fn day_of(date: &str) -> Option<u64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let id: u32 = format!("{y}{m}{d}").parse().ok()?;
    // A date that does not exist (2026-02-31) would read as another day: refused.
    crate::model::tables::day_from_yyyymmdd(id).filter(|day| yyyymmdd(*day) == id)
}

/// A decimal price as millionths: `0.7846` → 784 600.
fn micros(price: &str) -> Option<u64> {
    let (whole, frac) = price.split_once('.').unwrap_or((price, ""));
    if whole.is_empty() || frac.len() > 6 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac: u64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

/// Each (country code, category, day) the card prices, with its rate.
pub fn daily(rates: &[Rate]) -> BTreeMap<(String, String, u64), &Rate> {
    let mut by_pair: BTreeMap<(&str, &str), Vec<&Rate>> = BTreeMap::new();
    for r in rates {
        by_pair
            .entry((&r.country_code, &r.pricing_category))
            .or_default()
            .push(r);
    }
    let mut out = BTreeMap::new();
    for ((cc, category), mut list) in by_pair {
        list.sort_by_key(|r| r.effective_from);
        for (i, rate) in list.iter().enumerate() {
            let until = list
                .get(i + 1)
                .map_or(rate.effective_from + HORIZON_DAYS, |next| {
                    next.effective_from
                });
            for day in rate.effective_from..until {
                out.insert((cc.to_string(), category.to_string(), day), *rate);
            }
        }
    }
    out
}

/// Loads the card at `path`, replacing the previous one; with `dry_run`, only checks it.
pub async fn run(
    cfg: &Config,
    path: &str,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<usize, RateCardError> {
    let text = std::fs::read_to_string(path).map_err(|source| RateCardError::Read {
        path: path.to_string(),
        source,
    })?;
    let rates = parse(path, &text)?;
    let days = daily(&rates);
    writeln!(
        out,
        "{path}: {} rates, {} market and category days",
        rates.len(),
        days.len()
    )?;
    if dry_run {
        writeln!(out, "dry run: nothing loaded")?;
        return Ok(rates.len());
    }
    let ch = ClickHouse::new(&cfg.clickhouse)?;
    let loaded_at = load_stamp(&ch).await?;
    let at = format!("toDateTime({loaded_at}, 'UTC')");
    let values: Vec<String> = rates
        .iter()
        .map(|r| {
            format!(
                "({}, {}, toDate('{}'), {}, {}, {at})",
                quote_literal(&r.country_code),
                quote_literal(&r.pricing_category),
                date(r.effective_from),
                quote_literal(&r.currency),
                r.price_micros
            )
        })
        .collect();
    ch.execute(&format!(
        "INSERT INTO rate_card (country_code, pricing_category, effective_from, currency, \
         price_micros, loaded_at) VALUES {}",
        values.join(", ")
    ))
    .await?;
    let daily_rows: Vec<String> = days
        .iter()
        .map(|((cc, category, day), r)| {
            format!(
                "(toDate('{}'), {}, {}, {}, {}, {at})",
                date(*day),
                quote_literal(cc),
                quote_literal(category),
                quote_literal(&r.currency),
                r.price_micros
            )
        })
        .collect();
    for chunk in daily_rows.chunks(10_000) {
        ch.execute(&format!(
            "INSERT INTO rate_card_daily (day, country_code, pricing_category, currency, \
             price_micros, loaded_at) VALUES {}",
            chunk.join(", ")
        ))
        .await?;
    }
    // The previous card goes: rates it had that this one does not must not price anything.
    for table in ["rate_card", "rate_card_daily"] {
        ch.execute(&format!(
            "ALTER TABLE {table} DELETE WHERE loaded_at < {at}"
        ))
        .await?;
        ch.wait_for_mutations(table, Duration::from_secs(600))
            .await?;
    }
    writeln!(
        out,
        "rate card loaded: {} rates replace the previous card",
        rates.len()
    )?;
    Ok(rates.len())
}

/// The `loaded_at` of a new card: now, or one second past the newest card already loaded, so
/// that two loads within one second still replace each other (the old card is deleted as
/// `loaded_at < stamp`, and `FINAL` keeps the row with the largest stamp).
async fn load_stamp(ch: &ClickHouse) -> Result<u64, RateCardError> {
    let newest: Vec<u32> = ch
        .fetch_all("SELECT toUInt32(max(loaded_at)) FROM rate_card")
        .await?;
    let next = newest.first().map_or(0, |s| u64::from(*s) + 1);
    Ok(crate::clock::now_secs().max(next))
}

/// Days since the epoch as `YYYY-MM-DD`.
fn date(day: u64) -> String {
    let id = yyyymmdd(day);
    format!("{:04}-{:02}-{:02}", id / 10_000, id / 100 % 100, id % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_millionths() {
        assert_eq!(micros("0.7846"), Some(784_600));
        assert_eq!(micros("12"), Some(12_000_000));
        assert_eq!(micros("0.000001"), Some(1));
        for bad in ["", ".5", "1.2345678", "-1", "1,5", "1e3"] {
            assert_eq!(micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_rate_applies_until_the_next_one() {
        let card = "country_code,pricing_category,effective_from,currency,price\n\
                    # made up\n\
                    91,marketing,2026-01-01,INR,0.80\n\
                    91,marketing,2026-01-03,INR,0.90  # a price change\n";
        let rates = parse("card.csv", card).expect("valid");
        let days = daily(&rates);
        let jan1 = day_of("2026-01-01").expect("date");
        let price = |d: u64| days[&("91".to_string(), "marketing".to_string(), d)].price_micros;
        assert_eq!(
            (price(jan1), price(jan1 + 1), price(jan1 + 2)),
            (800_000, 800_000, 900_000)
        );
        assert_eq!(days.len() as u64, 2 + HORIZON_DAYS);
        assert_eq!(date(jan1), "2026-01-01");
    }

    #[test]
    fn errors_name_the_line() {
        for (card, says) in [
            ("91,marketing,2026-01-01,INR\n", "line 1: 4 fields"),
            ("x1,marketing,2026-01-01,INR,1\n", "country code"),
            ("91,Marketing,2026-01-01,INR,1\n", "pricing category"),
            ("91,marketing,2026-13-01,INR,1\n", "date"),
            ("91,marketing,2026-02-31,INR,1\n", "date"),
            ("91,marketing,2026-01-01,rupees,1\n", "currency"),
            ("# nothing\n", "no rates"),
        ] {
            let e = parse("card.csv", card).expect_err(card).to_string();
            assert!(e.contains(says), "{card}: {e}");
        }
    }
}
