//! The request body as the dispatcher sees it, and whether it was read to its end (which
//! decides whether the connection can carry another request).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// A request's body as the dispatcher sees it: none; the whole body, when `h1` found it
/// already read behind its head; or hyper's streaming body. On a connection that goes back to `h1` after this request
/// the body must be read to its end first (`BodyEnd`): only then does the next byte start
/// the next request.
#[derive(Debug)]
pub enum ClientBody {
    Empty,
    /// Taken by the first poll.
    Full(Option<Bytes>),
    Hyper {
        /// Taken only by `drop`.
        body: Option<hyper::body::Incoming>,
        end: Option<Arc<BodyEnd>>,
    },
}

/// Whether a request body was read to its end, by the dispatcher or, after the dispatcher
/// dropped it, by a bounded discard (as nginx discards an unread body to keep the
/// connection).
#[derive(Debug, Default)]
pub struct BodyEnd {
    ended: AtomicBool,
    /// A read failed (malformed chunked coding, bad trailers, the client gone): where the
    /// body ends is unknown, so the connection cannot go on.
    failed: AtomicBool,
    discarding: AtomicBool,
    discarded: tokio::sync::Notify,
}

/// The most of an unread request body discarded to keep its connection.
const DISCARD_LIMIT: usize = 64 * 1024;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

impl BodyEnd {
    /// Whether the body ended, waiting for a discard in progress to finish.
    pub async fn ended(&self) -> bool {
        let discarded = self.discarded.notified();
        if !self.ended.load(Ordering::Acquire) && self.discarding.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(DISCARD_TIME, discarded).await;
        }
        self.ended.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire)
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    fn mark(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Reads and drops what is left of `body`, up to `DISCARD_LIMIT` and `DISCARD_TIME`.
    fn discard(self: Arc<Self>, mut body: hyper::body::Incoming) {
        self.discarding.store(true, Ordering::Release);
        tokio::spawn(async move {
            let mut left = DISCARD_LIMIT;
            let read = async {
                while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                    let Ok(frame) = frame else {
                        self.fail();
                        return None;
                    };
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    left = left.checked_sub(len)?;
                }
                Some(())
            };
            if let Ok(Some(())) = tokio::time::timeout(DISCARD_TIME, read).await {
                self.mark();
            }
            self.discarded.notify_waiters();
        });
    }
}

impl ClientBody {
    /// The whole body, when it was read with the head (and is not taken yet).
    pub fn take_full(&mut self) -> Option<Bytes> {
        match self {
            ClientBody::Full(data) => data.take(),
            _ => None,
        }
    }

    pub fn hyper(body: hyper::body::Incoming, end: Option<Arc<BodyEnd>>) -> Self {
        let body = ClientBody::Hyper {
            body: Some(body),
            end,
        };
        body.is_end_stream();
        body
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let ClientBody::Hyper {
            body,
            end: Some(end),
        } = self
        {
            match body.take() {
                Some(body) if !body.is_end_stream() => Arc::clone(end).discard(body),
                _ => end.mark(),
            }
        }
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ClientBody::Empty | ClientBody::Hyper { body: None, .. } => Poll::Ready(None),
            ClientBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ClientBody::Hyper {
                body: Some(body),
                end,
            } => {
                let polled = Pin::new(body).poll_frame(cx);
                match (&polled, end) {
                    (Poll::Ready(None), Some(end)) => end.mark(),
                    (Poll::Ready(Some(Err(_))), Some(end)) => end.fail(),
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty | ClientBody::Hyper { body: None, .. } => true,
            ClientBody::Full(data) => data.is_none(),
            ClientBody::Hyper {
                body: Some(body),
                end,
            } => {
                let ended = body.is_end_stream();
                if let (true, Some(end)) = (ended, end) {
                    end.mark();
                }
                ended
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty | ClientBody::Hyper { body: None, .. } => SizeHint::with_exact(0),
            ClientBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ClientBody::Hyper { body: Some(b), .. } => b.size_hint(),
        }
    }
}
