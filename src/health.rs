//! Liveness from progress: a component's loops and callbacks each hold a [`Watch`] with a
//! deadline, and `/healthz` answers 503 as soon as one of them is overdue, so an orchestrator
//! restarts a process that is up but no longer doing its work (a wedged loop, a client whose
//! background thread died), not only one that crashed.
//!
//! A watch is either *due* (progress is expected by `since + deadline`) or *idle* (nothing to
//! do, nothing expected: a sink with no records in hand is healthy however long it waits).
//! Two ways to use one:
//! - periodic work (a statistics callback, a polling thread) calls [`Watch::beat`] each time:
//!   it stays due, and stalls when the beats stop;
//! - a task (storing a batch) calls [`Watch::beat`] when it starts and [`Watch::idle`] when it
//!   is done: it stalls when one task outlasts the deadline.
//!
//! Beats are two relaxed atomic stores, cheap enough for any loop; the registry's lock is
//! taken only to register and to answer `/healthz`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `since` value of an idle watch.
const IDLE: u64 = u64::MAX;

/// The watches of one component.
#[derive(Clone)]
pub struct Health {
    start: Instant,
    watches: Arc<Mutex<Vec<Arc<WatchState>>>>,
}

struct WatchState {
    name: &'static str,
    deadline_ms: u64,
    /// Milliseconds after `Health::start` when progress was last seen, or [`IDLE`].
    since_ms: AtomicU64,
    start: Instant,
}

/// One loop's or callback's promise to make progress within its deadline.
#[derive(Clone)]
pub struct Watch(Arc<WatchState>);

/// A watch that missed its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub name: &'static str,
    pub overdue: Duration,
    pub deadline: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            watches: Arc::default(),
        }
    }
}

impl Health {
    /// Registers a watch, idle until its first beat.
    pub fn watch(&self, name: &'static str, deadline: Duration) -> Watch {
        let state = Arc::new(WatchState {
            name,
            deadline_ms: deadline.as_millis() as u64,
            since_ms: AtomicU64::new(IDLE),
            start: self.start,
        });
        if let Ok(mut w) = self.watches.lock() {
            w.push(Arc::clone(&state));
        }
        Watch(state)
    }

    /// Every watch past its deadline now.
    pub fn stalls(&self) -> Vec<Stall> {
        let now = self.start.elapsed().as_millis() as u64;
        let Ok(watches) = self.watches.lock() else {
            return Vec::new();
        };
        watches
            .iter()
            .filter_map(|w| {
                let since = w.since_ms.load(Ordering::Relaxed);
                let age = now.saturating_sub(since);
                (since != IDLE && age > w.deadline_ms).then(|| Stall {
                    name: w.name,
                    overdue: Duration::from_millis(age - w.deadline_ms),
                    deadline: Duration::from_millis(w.deadline_ms),
                })
            })
            .collect()
    }

    /// `/healthz`: 200 `ok`, or 503 naming each stalled watch.
    pub fn report(&self) -> (u16, String) {
        let stalls = self.stalls();
        if stalls.is_empty() {
            return (200, "ok\n".into());
        }
        let lines: Vec<String> = stalls
            .iter()
            .map(|s| {
                format!(
                    "stalled: {} (no progress for {} s, deadline {} s)",
                    s.name,
                    (s.deadline + s.overdue).as_secs(),
                    s.deadline.as_secs()
                )
            })
            .collect();
        (503, lines.join("\n") + "\n")
    }
}

impl Watch {
    /// Progress now; the next is due within the deadline.
    pub fn beat(&self) {
        let now = self.0.start.elapsed().as_millis() as u64;
        self.0.since_ms.store(now, Ordering::Relaxed);
    }

    /// Nothing to do: no progress expected until the next [`Watch::beat`].
    pub fn idle(&self) {
        self.0.since_ms.store(IDLE, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_stalls_only_when_due_and_overdue() {
        let health = Health::default();
        let w = health.watch("loop", Duration::from_millis(30));
        assert_eq!(health.report().0, 200, "idle from the start");
        w.beat();
        assert!(health.stalls().is_empty(), "within its deadline");
        std::thread::sleep(Duration::from_millis(60));
        let stalls = health.stalls();
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].name, "loop");
        let (status, body) = health.report();
        assert_eq!(status, 503);
        assert!(body.contains("stalled: loop"), "{body}");
        w.beat();
        assert_eq!(health.report().0, 200, "progress clears the stall");
        std::thread::sleep(Duration::from_millis(60));
        w.idle();
        assert_eq!(health.report().0, 200, "an idle watch never stalls");
    }

    #[test]
    fn one_stalled_watch_among_several_is_named() {
        let health = Health::default();
        let fast = health.watch("stats", Duration::from_secs(60));
        let slow = health.watch("batch", Duration::from_millis(10));
        fast.beat();
        slow.beat();
        std::thread::sleep(Duration::from_millis(30));
        let names: Vec<_> = health.stalls().iter().map(|s| s.name).collect();
        assert_eq!(names, ["batch"]);
    }
}
