//! Body types. The one response body type: a fixed buffer, an upstream's streaming body,
//! or a file streamed from disk (an enum rather than a boxed trait object, so that the hot
//! path allocates nothing to describe a body), with a proxied response's relayed header
//! lines riding along. And the request body as the handler sees it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::http1::RawHeaders;
use crate::observe::Completion;
use crate::proxy::UpstreamBody;
use crate::static_files::FileBody;
use crate::timeouts::RequestGuard;

pub struct Body {
    content: Content,
    /// Header lines relayed as they came (a proxied response's, see `RawHeaders`), to be
    /// written after the response's own header map.
    raw_headers: Option<RawHeaders>,
}

enum Content {
    Full(Option<Bytes>),
    /// Boxed: it holds the upstream connection, and most responses never stream.
    Upstream(Box<UpstreamBody>),
    File(FileBody),
}

impl Body {
    pub fn empty() -> Self {
        Body::of(Content::Full(None))
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Body::of(Content::Full((!bytes.is_empty()).then_some(bytes)))
    }

    pub fn upstream(body: Box<UpstreamBody>) -> Self {
        Body::of(Content::Upstream(body))
    }

    pub fn file(body: FileBody) -> Self {
        Body::of(Content::File(body))
    }

    fn of(content: Content) -> Self {
        Body {
            content,
            raw_headers: None,
        }
    }

    pub fn with_raw_headers(mut self, raw: RawHeaders) -> Self {
        self.raw_headers = Some(raw);
        self
    }

    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.raw_headers.take()
    }

    /// The file a file body streams, for sending it without `poll_frame`.
    pub fn file_mut(&mut self) -> Option<&mut FileBody> {
        match &mut self.content {
            Content::File(file) => Some(file),
            _ => None,
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().content {
            Content::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Content::Upstream(upstream) => Pin::new(upstream.as_mut()).poll_frame(cx),
            Content::File(file) => Pin::new(file).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Full(data) => data.is_none(),
            Content::Upstream(upstream) => upstream.is_end_stream(),
            Content::File(file) => file.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Content::Upstream(upstream) => upstream.size_hint(),
            Content::File(file) => file.size_hint(),
        }
    }
}

/// A request's body as the handler sees it: none; the whole body, when `http1` found it
/// already read behind its head; or hyper's streaming body. On a connection that goes back to `http1` after this request
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

/// Whether a request body was read to its end, by the handler or, after the handler
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

/// The response body as sent (by `http1` or hyper): a `Body` that keeps its request counted as in progress (for the
/// idle clock) until its last frame is out or it is dropped, then reports the request
/// (`observe`) with the bytes actually sent.
pub struct ResponseBody {
    body: Body,
    guard: Option<RequestGuard>,
    completion: Option<Completion>,
    bytes: u64,
    /// The body broke off: reported on the poll after the one that found it, so that
    /// hyper, which drops its unwritten output on a body error, first writes what came
    /// (SPEC: a cut response reaches the client as far as it came).
    broken: Option<BoxError>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ResponseBody {
    pub fn new(body: Body, guard: RequestGuard, completion: Completion) -> Self {
        ResponseBody {
            body,
            guard: Some(guard),
            completion: Some(completion),
            bytes: 0,
            broken: None,
        }
    }

    /// A response nothing reports (the differential fuzzer's).
    pub fn unreported(body: Body, guard: RequestGuard) -> Self {
        ResponseBody {
            body,
            guard: Some(guard),
            completion: None,
            bytes: 0,
            broken: None,
        }
    }

    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.body.take_raw_headers()
    }

    /// The file this body streams, if it is a file body that has not broken off.
    pub fn file_mut(&mut self) -> Option<&mut FileBody> {
        match self.broken {
            None => self.body.file_mut(),
            Some(_) => None,
        }
    }

    /// `n` bytes of the file went to the client directly (`sendfile`).
    pub fn sent_from_file(&mut self, n: usize) {
        if let Some(file) = self.body.file_mut() {
            file.advance(n);
            self.bytes += n as u64;
            if file.is_end_stream() {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        self.guard = None;
        if let Some(c) = self.completion.take() {
            c.finish(self.bytes);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(e) = this.broken.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = polled {
            if let Some(c) = this.completion.as_mut() {
                c.body_failed(crate::proxy::body_failure(&e));
            }
            this.finish();
            this.broken = Some(e);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                // hyper stops polling once the body says it has ended, and may keep it
                // around until the next request: report now, not on drop.
                if this.body.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
