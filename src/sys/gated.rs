//! A future polled only when something it waits on has woken it.
//!
//! Every connection waits on its request traffic and, beside it, on the shutdown signal
//! and its timeout clock. In a `select!` those two would be polled again on every wake-up
//! of the connection, twice per request, for nothing (measured in `benches/README.md`).
//! Gated, they cost an atomic swap per wake-up instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
    waker: Waker,
}

struct Gate {
    /// Set by the inner future's wake-ups (and initially, for the first poll).
    woken: AtomicBool,
    /// The task to wake on their behalf.
    task: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Gated<F> {
    pub fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Gated {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&gate)),
            gate,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self.gate.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !self.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut inner_cx = Context::from_waker(&this.waker);
        this.inner.as_mut().poll(&mut inner_cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; ready after `ready_after` polls, waking itself each time.
    struct Counting {
        polls: Arc<AtomicUsize>,
    }

    impl Future for Counting {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn inner_is_polled_once_until_woken_and_wakes_still_arrive() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut gated = Gated::new(Counting {
            polls: Arc::clone(&polls),
        });
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..5 {
            assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled without a wake-up");
        // A real timer behind the gate still completes it.
        let slept = Gated::new(tokio::time::sleep(Duration::from_millis(20)));
        tokio::time::timeout(Duration::from_secs(2), slept)
            .await
            .expect("the gated sleep never completed");
    }
}
