//! Refused credentials become security events counted per source, reason and route over a
//! window, not a record per request: a flood of forged requests costs one map entry per
//! source, and the security log keeps what happened (who, why, how often) at a bounded cost.
//!
//! Invariant: the tally holds at most `max_sources` entries; what does not fit is counted in
//! `bluetick_ingest_dropped_total{cause="security_sources"}`, never buffered.

use crate::clock::now_ms;
use crate::metrics as m;
use crate::model::{SecurityEvent, EVENT_VERSION};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

type Key = (IpAddr, &'static str, &'static str);

#[derive(Debug)]
pub struct SecurityTally {
    max_sources: usize,
    /// (first refusal in the window, Unix ms; refusals).
    counts: Mutex<HashMap<Key, (u64, u32)>>,
}

impl SecurityTally {
    pub fn new(max_sources: usize) -> Self {
        SecurityTally {
            max_sources,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one refusal of `source` for `reason` on `route`.
    pub fn record(&self, source: IpAddr, reason: &'static str, route: &'static str) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let full = counts.len() >= self.max_sources;
        match counts.get_mut(&(source, reason, route)) {
            Some(entry) => entry.1 = entry.1.saturating_add(1),
            None if full => {
                metrics::counter!(m::INGEST_DROPPED, "cause" => "security_sources").increment(1)
            }
            None => {
                counts.insert((source, reason, route), (now_ms(), 1));
            }
        }
    }

    /// The window's events (one per source, reason and route, with its count), emptying it.
    pub fn drain(&self) -> Vec<SecurityEvent<'static>> {
        let Ok(mut counts) = self.counts.lock() else {
            return Vec::new();
        };
        counts
            .drain()
            .map(|((ip, reason, route), (first_ms, count))| SecurityEvent {
                v: EVENT_VERSION,
                received_ms: first_ms,
                source_ip: Cow::Owned(ip.to_string()),
                reason: Cow::Borrowed(reason),
                route: Cow::Borrowed(route),
                count,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_per_source_and_bounded() {
        let t = SecurityTally::new(2);
        let a: IpAddr = "203.0.113.1".parse().expect("ip");
        let b: IpAddr = "203.0.113.2".parse().expect("ip");
        let c: IpAddr = "203.0.113.3".parse().expect("ip");
        for _ in 0..1000 {
            t.record(a, "bad_signature", "webhook");
        }
        t.record(b, "missing_signature", "webhook");
        t.record(c, "bad_signature", "webhook");
        let mut events = t.drain();
        events.sort_by(|x, y| x.source_ip.cmp(&y.source_ip));
        assert_eq!(events.len(), 2, "the third source did not fit");
        assert_eq!(
            (events[0].source_ip.as_ref(), events[0].count),
            ("203.0.113.1", 1000)
        );
        assert_eq!(events[1].count, 1);
        assert!(t.drain().is_empty(), "a window starts empty");
    }
}
