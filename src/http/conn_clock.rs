//! Per-connection `header_read_timeout` and `idle_timeout`, kept apart.
//!
//! hyper's own `header_read_timeout` also runs across the idle gap between keep-alive
//! requests (hyper PR #3828), so with it an idle connection would be cut after 10 s: far
//! below the ALB's 60 s idle timeout, which must be the shorter of the two or the ALB
//! reuses a connection that is being closed and answers 502. So hyper runs without a
//! timer and this module keeps the two clocks itself:
//!
//! - the header clock runs from accept, and from the first byte of each later request, to
//!   the end of the request headers (when the service is called); if it runs out the
//!   connection is closed (slowloris);
//! - the idle clock runs while no request is in progress and no new request has begun;
//!   if it runs out the connection is closed gracefully.
//!
//! A request is in progress from the service call until its response body is finished
//! (`RequestGuard`). A per-connection watchdog checks the clocks a few times per timeout.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::sys::coarse_clock;

const NOT_READING: u64 = u64::MAX;

/// The clocks of one connection, as nanoseconds since it was accepted.
pub struct ConnClock {
    /// `coarse_clock` time of the accept.
    start: Duration,
    active: AtomicU32,
    idle_since: AtomicU64,
    header_since: AtomicU64,
    /// The head being read has both Content-Length and Transfer-Encoding (`smuggling`).
    framing_conflict: AtomicBool,
    /// An HTTP/2 connection: its idle gaps carry PING and WINDOW_UPDATE frames, which
    /// must not start the header clock; only the idle clock applies.
    h2: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConnTimeout {
    /// The request headers did not arrive in time: close now.
    Headers,
    /// Nothing happened for `idle_timeout`: close gracefully.
    Idle,
}

impl ConnClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnClock {
            start: coarse_clock::now(),
            active: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            header_since: AtomicU64::new(0),
            framing_conflict: AtomicBool::new(false),
            h2: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        coarse_clock::now().saturating_sub(self.start).as_nanos() as u64
    }

    /// Bytes arrived: if no request is in progress, a new one has begun (returns true).
    pub fn on_read(&self) -> bool {
        let starts = !self.h2.load(Ordering::Relaxed)
            && self.active.load(Ordering::Relaxed) == 0
            && self.header_since.load(Ordering::Relaxed) == NOT_READING;
        if starts {
            self.header_since.store(self.now(), Ordering::Relaxed);
        }
        starts
    }

    /// The client sent the HTTP/2 preface.
    /// The connection speaks h2c: its heads are not HTTP/1.1 heads to scan.
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    pub fn mark_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
        self.header_since.store(NOT_READING, Ordering::Relaxed);
        self.idle_since.store(self.now(), Ordering::Relaxed);
    }

    /// The request now starting is framed in a way no check vouched for: refuse it.
    pub fn mark_framing_conflict(&self) {
        self.framing_conflict.store(true, Ordering::Relaxed);
    }

    /// Whether the request now starting had conflicting framing headers (and forget it).
    pub fn take_framing_conflict(&self) -> bool {
        self.framing_conflict.swap(false, Ordering::Relaxed)
    }

    /// The request headers are complete and the request is being handled.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.header_since.store(NOT_READING, Ordering::Relaxed);
        RequestGuard(Arc::clone(self))
    }

    /// Whether a request is in progress (its response not yet finished).
    pub fn in_progress(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Which clock ran out, if any.
    pub fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<ConnTimeout> {
        let now = self.now();
        let header_since = self.header_since.load(Ordering::Relaxed);
        if header_since != NOT_READING {
            let late = now.saturating_sub(header_since) > nanos(header_timeout);
            return late.then_some(ConnTimeout::Headers);
        }
        let idle = self.active.load(Ordering::Relaxed) == 0
            && now.saturating_sub(self.idle_since.load(Ordering::Relaxed)) > nanos(idle_timeout);
        idle.then_some(ConnTimeout::Idle)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Held while a request is in progress (until its response body is finished or dropped).
pub struct RequestGuard(Arc<ConnClock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let clock = &self.0;
        if clock.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            clock.idle_since.store(clock.now(), Ordering::Relaxed);
        }
    }
}

/// How often the watchdog looks: a quarter of the shorter timeout, within 10 ms..1 s.
pub fn tick(header_timeout: Duration, idle_timeout: Duration) -> Duration {
    (header_timeout.min(idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}
