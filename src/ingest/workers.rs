//! Where connections run: one single-threaded runtime per worker thread, each connection
//! pinned to one of them for its life.
//!
//! Why not tokio's work-stealing runtime: a webhook is woken twice (its request arrives, then
//! the broker's ack), and at moderate rates the work-stealing scheduler wakes an idle worker
//! for nearly every one of those, to see if there is work to steal. On two cores, bare hyper
//! alone cost 1.5-1.8x as much CPU per request on two work-stealing workers as on one
//! (BENCHMARKS.md, "Ingest against its floor"). A thread that owns its connections has nobody
//! to wake: a request is read, parsed and answered on the thread that accepted it. Connections are dealt round-robin; Meta and load balancers spread
//! webhooks over many keep-alive connections, so the threads stay evenly loaded.
//!
//! Worker 0 is the runtime [`super::run`] is called on; the others are threads of their own,
//! which end when the [`Workers`] is dropped (after the connections have drained).

use std::future::Future;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// One worker per two cores the process may use, at least one: the other half is left to
/// librdkafka's broker threads (batching, compression, the socket) and the kernel's network
/// stack, which on a 2-core host took as much CPU as the workers. There, one worker cost
/// 14-24 % less CPU per 1-status webhook than one per core, about the same per 100-status one
/// (BENCHMARKS.md), and sustained a higher rate (36,600 vs 29,300 1-status webhooks/s at
/// p99 <= 50 ms, `bluetick-load step`).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

pub struct Workers {
    /// Handles of the extra runtimes (worker 0, the caller's, is not listed).
    others: Vec<Handle>,
    stop: watch::Sender<bool>,
    next: usize,
}

impl Workers {
    /// `count` workers in all, the calling runtime included; 0 means [`default_count`].
    pub fn start(count: usize) -> std::io::Result<Self> {
        let count = match count {
            0 => default_count(),
            n => n,
        };
        let (stop, stopped) = watch::channel(false);
        let mut others = Vec::new();
        for i in 1..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            others.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("ingest-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                })?;
        }
        Ok(Workers {
            others,
            stop,
            next: 0,
        })
    }

    /// Runs a connection on the next worker in turn.
    pub fn spawn<F>(&mut self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let turn = self.next;
        self.next = (self.next + 1) % (self.others.len() + 1);
        match turn.checked_sub(1).and_then(|i| self.others.get(i)) {
            Some(handle) => drop(handle.spawn(connection)),
            None => drop(tokio::spawn(connection)),
        }
    }

    /// How many workers serve connections.
    pub fn count(&self) -> usize {
        self.others.len() + 1
    }
}

impl Drop for Workers {
    /// Stops the extra runtimes; their threads are not joined, so that dropping never blocks
    /// an async task. Their connections have drained by now (graceful shutdown waits for them).
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn connections_are_dealt_to_every_worker_in_turn() {
        let mut workers = Workers::start(3).expect("workers");
        assert_eq!(workers.count(), 3);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::channel(6);
        for _ in 0..6 {
            let (seen, tx) = (Arc::clone(&seen), tx.clone());
            workers.spawn(async move {
                let name = std::thread::current().name().map(str::to_string);
                seen.lock().expect("lock").push(name);
                let _ = tx.send(()).await;
            });
        }
        for _ in 0..6 {
            rx.recv().await.expect("every connection ran");
        }
        let seen = seen.lock().expect("lock").clone();
        let threads: HashSet<_> = seen.iter().collect();
        assert_eq!(threads.len(), 3, "{seen:?}");
        for name in ["ingest-worker-1", "ingest-worker-2"] {
            let n = seen.iter().filter(|s| s.as_deref() == Some(name)).count();
            assert_eq!(n, 2, "{name} ran {n} of 6: {seen:?}");
        }
    }
}
