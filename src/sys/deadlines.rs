//! Deadlines for in-flight upstream exchanges (`response_timeout`), kept on a per-worker
//! board and swept every `TICK` by the worker, instead of a tokio timer per request.
//!
//! Why: a tokio timer entry per proxied request is registered in the timer wheel and taken
//! out again under the driver's lock, and the time driver walks the wheel on every park
//! (the cost is in `benches/README.md`). Here an exchange that is
//! still waiting after its first poll takes a slot (one uncontended lock, one waker clone)
//! and gives it back when done; the sweep wakes the ones past their deadline. The price is
//! precision: a timeout fires up to `TICK` late (or a clock tick early, see `coarse_clock`),
//! which is nothing next to timeouts counted in seconds.

use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::sys::coarse_clock;

/// How often the board is swept (and so how late a timeout may fire).
pub const TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Deadlines {
    slots: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

struct Slot {
    /// In `coarse_clock` time.
    deadline: Duration,
    waker: Option<Waker>,
    expired: bool,
}

/// The deadline ran out before the future finished.
#[derive(Debug, PartialEq, Eq)]
pub struct Expired;

impl Deadlines {
    /// Runs `fut` until it finishes or `timeout` (from its first wait) passes.
    pub async fn within<F: Future>(&self, timeout: Duration, fut: F) -> Result<F::Output, Expired> {
        let mut fut = std::pin::pin!(fut);
        let mut ticket = Ticket {
            board: self,
            timeout,
            slot: None,
        };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            match ticket.expired(cx) {
                true => Poll::Ready(Err(Expired)),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Wakes every waiter whose deadline has passed.
    pub fn sweep(&self) {
        let now = coarse_clock::now();
        let mut board = self.lock();
        for slot in board.slots.iter_mut() {
            if !slot.expired && slot.deadline <= now {
                if let Some(waker) = slot.waker.take() {
                    slot.expired = true;
                    waker.wake();
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A slot on the board, taken lazily at the first wait and given back on drop.
struct Ticket<'a> {
    board: &'a Deadlines,
    timeout: Duration,
    slot: Option<usize>,
}

impl Ticket<'_> {
    /// Whether the deadline has passed; if not, the sweep will wake `cx` once it has.
    fn expired(&mut self, cx: &Context<'_>) -> bool {
        let mut board = self.board.lock();
        match self.slot {
            Some(i) => {
                let slot = &mut board.slots[i];
                if slot.expired {
                    return true;
                }
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                false
            }
            None => {
                let slot = Slot {
                    deadline: coarse_clock::now() + self.timeout,
                    waker: Some(cx.waker().clone()),
                    expired: false,
                };
                let i = match board.free.pop() {
                    Some(i) => {
                        board.slots[i] = slot;
                        i
                    }
                    None => {
                        board.slots.push(slot);
                        board.slots.len() - 1
                    }
                };
                self.slot = Some(i);
                false
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut board = self.board.lock();
            board.slots[i].waker = None;
            board.slots[i].expired = true;
            board.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn used(d: &Deadlines) -> usize {
        let board = d.lock();
        board.slots.len() - board.free.len()
    }

    #[tokio::test]
    async fn a_ready_future_takes_no_slot() {
        let d = Deadlines::default();
        assert_eq!(d.within(Duration::ZERO, async { 7 }).await, Ok(7));
        assert_eq!(d.lock().slots.len(), 0);
    }

    #[tokio::test]
    async fn a_stuck_future_expires_at_the_sweep_after_its_deadline() {
        let d = Arc::new(Deadlines::default());
        let sweeper = Arc::clone(&d);
        let sweeping = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sweeper.sweep();
            }
        });
        let started = std::time::Instant::now();
        let stuck = d.within(Duration::from_millis(50), std::future::pending::<()>());
        assert_eq!(stuck.await, Err(Expired));
        // The coarse clock may put it one tick (at most 4 ms) early.
        assert!(started.elapsed() >= Duration::from_millis(45));
        assert_eq!(used(&d), 0, "the slot is given back");
        // A future finishing in time is not cut, and its slot is reused.
        let quick = d.within(
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_millis(20)),
        );
        assert_eq!(quick.await, Ok(()));
        assert_eq!((used(&d), d.lock().slots.len()), (0, 1));
        sweeping.abort();
    }
}
