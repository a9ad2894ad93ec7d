//! What ingest admits before a body's signature is checked, when anyone on the internet can
//! send: requests in progress, and bytes of bodies held across all connections.
//!
//! Invariant: memory held for bodies stays under `max_in_flight_requests × small_body_bytes`
//! plus `body_bytes_in_flight_mib`. A small body (Meta's usual: one status, a few KiB) is always
//! admitted while a request slot is free; a larger one reserves its bytes from the shared
//! budget before they are read (its declared length, or chunk by chunk), and a full budget
//! answers 503 at once. Slow senders of large bodies therefore cannot starve small ones.

use super::error::RequestError;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bodies up to this many bytes read from the request slot's own allowance.
#[derive(Debug)]
pub struct Admission {
    pub max_in_flight: u64,
    pub small_body_bytes: u64,
    pub body_budget_bytes: u64,
    in_flight: AtomicU64,
    body_bytes: AtomicU64,
}

impl Admission {
    pub fn new(max_in_flight: u64, small_body_bytes: u64, body_budget_bytes: u64) -> Self {
        Admission {
            max_in_flight,
            small_body_bytes,
            body_budget_bytes,
            in_flight: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        }
    }

    /// One of `max_in_flight` request slots, or `Overloaded`.
    pub fn request(&self) -> Result<Slot<'_>, RequestError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(RequestError::Overloaded);
        }
        Ok(Slot {
            admission: self,
            reserved: 0,
        })
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Bytes of large bodies held now.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

/// A request slot, and the large-body bytes it reserved; both are given back on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    admission: &'a Admission,
    reserved: u64,
}

impl Slot<'_> {
    /// Makes room for a body of `len` bytes: free up to the small-body allowance, reserved
    /// from the shared budget beyond it. Called with the declared length before reading, or
    /// with the length so far as chunks arrive; reserves only what it has not yet.
    pub fn make_room(&mut self, len: u64) -> Result<(), RequestError> {
        let a = self.admission;
        let needed = len.saturating_sub(a.small_body_bytes);
        if needed <= self.reserved {
            return Ok(());
        }
        let more = needed - self.reserved;
        let before = a.body_bytes.fetch_add(more, Ordering::AcqRel);
        if before + more > a.body_budget_bytes {
            a.body_bytes.fetch_sub(more, Ordering::AcqRel);
            return Err(RequestError::BodiesInFlight);
        }
        self.reserved = needed;
        Ok(())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let a = self.admission;
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.reserved > 0 {
            a.body_bytes.fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

/// The address a request comes from: the peer's, unless the peer is one of `trusted`
/// proxies, in which case the last `X-Forwarded-For` hop that is not a trusted proxy. A
/// forwarding header from anyone else is ignored: it is whatever the sender wrote.
pub fn source_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    header
        .rsplit(',')
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_pass_while_large_ones_share_a_bounded_budget() {
        let a = Admission::new(10, 1_000, 5_000);
        let mut big = a.request().expect("slot");
        big.make_room(4_000).expect("3000 of 5000");
        let mut other = a.request().expect("slot");
        assert!(matches!(
            other.make_room(4_000),
            Err(RequestError::BodiesInFlight)
        ));
        assert_eq!(a.body_bytes(), 3_000, "a refused reservation holds nothing");
        other.make_room(900).expect("small bodies need no budget");
        big.make_room(6_000).expect("grows to 5000");
        assert!(big.make_room(6_001).is_err());
        drop(big);
        assert_eq!(a.body_bytes(), 0);
        drop(other);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn request_slots_are_bounded() {
        let a = Admission::new(2, 10, 10);
        let (x, y) = (a.request().expect("1"), a.request().expect("2"));
        assert!(matches!(a.request(), Err(RequestError::Overloaded)));
        drop((x, y));
        assert!(a.request().is_ok());
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let xff = Some("203.0.113.9, 10.1.2.3");
        assert_eq!(source_ip(ip("10.0.0.5"), xff, &trusted), ip("203.0.113.9"));
        assert_eq!(
            source_ip(ip("198.51.100.7"), xff, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(source_ip(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        assert_eq!(
            source_ip(ip("10.0.0.5"), Some("junk"), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(source_ip(ip("10.0.0.5"), xff, &[]), ip("10.0.0.5"));
    }
}
