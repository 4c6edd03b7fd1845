//! Keeps the workers' connection counts even.
//!
//! Every worker accepts on the same listening sockets, and which one the kernel wakes for
//! a new connection is close to arbitrary. A client that opens its connections all at once
//! (a load balancer's pool of keep-alive connections, a benchmark) could leave one worker
//! with most of them: that worker becomes the bottleneck while the other idles
//! (measured in `benches/README.md`). So a worker that accepts a connection
//! while it serves more than one more than the least busy worker hands the connection
//! over to that worker (one channel send per connection, nothing per request).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// An accepted connection on its way to being served: its slot under `max_connections`
/// and its count on the worker that is to serve it travel with it.
pub struct Accepted<S> {
    pub stream: S,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
    /// Counted on the worker that is to serve it from the moment it is picked: counted
    /// only on arrival, a burst of new connections would all be sent to the same worker
    /// before it got to count the first of them.
    pub open: Open,
}

/// A connection accepted by one worker, to be served by another (the stream detached
/// from the accepting worker's reactor).
pub type Handoff = Accepted<std::net::TcpStream>;

impl<S> Accepted<S> {
    /// The same connection with its stream converted (detached from or registered with a
    /// worker's reactor).
    pub fn convert<T>(self, f: impl FnOnce(S) -> io::Result<T>) -> io::Result<Accepted<T>> {
        Ok(Accepted {
            stream: f(self.stream)?,
            peer: self.peer,
            permit: self.permit,
            open: self.open,
        })
    }
}

pub struct Balance {
    open: Vec<AtomicUsize>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

/// Counts a connection as open on its worker until dropped.
pub struct Open {
    balance: Arc<Balance>,
    worker: usize,
}

impl Balance {
    /// The balance for `workers` workers and each worker's inbox of handed-over
    /// connections.
    pub fn new(workers: usize) -> (Arc<Balance>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (inboxes, receivers) = (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Balance {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes,
        };
        (Arc::new(balance), receivers)
    }

    /// The worker that should serve a connection `me` has just accepted.
    pub fn pick(&self, me: usize) -> usize {
        let count = |w: usize| self.open.get(w).map_or(0, |o| o.load(Ordering::Relaxed));
        let least = (0..self.open.len()).min_by_key(|&w| count(w)).unwrap_or(me);
        match count(me) > count(least) + 1 {
            true => least,
            false => me,
        }
    }

    /// Hands `conn` to worker `to`; gives it back if that worker is gone.
    pub fn send(&self, to: usize, conn: Handoff) -> Result<(), Handoff> {
        match self.inboxes.get(to) {
            Some(inbox) => inbox.send(conn).map_err(|e| e.0),
            None => Err(conn),
        }
    }

    /// Counts a connection as open on `policy::worker` (until the returned guard is dropped).
    pub fn open(self: &Arc<Self>, worker: usize) -> Open {
        if let Some(o) = self.open.get(worker) {
            o.fetch_add(1, Ordering::Relaxed);
        }
        Open {
            balance: Arc::clone(self),
            worker,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(o) = self.balance.open.get(self.worker) {
            o.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_ahead_by_more_than_one_hands_over_to_the_least_busy() {
        let (b, _inboxes) = Balance::new(3);
        let held: Vec<Open> = [0, 0, 1].iter().map(|&w| b.open(w)).collect();
        assert_eq!(b.pick(0), 2, "0 has 2, 2 has 0");
        assert_eq!(b.pick(1), 1, "1 has 1: within one of the least busy");
        let more = b.open(2);
        assert_eq!(b.pick(0), 0, "0 has 2, the others 1");
        drop(held);
        drop(more);
        assert_eq!(b.pick(0), 0);
    }
}
