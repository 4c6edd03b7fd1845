//! Body types. The one response body type: a fixed buffer, an upstream's streaming body,
//! or a file streamed from disk (an enum rather than a boxed trait object, so that the hot
//! path allocates nothing to describe a body), with a proxied response's relayed header
//! lines riding along. And the request body as the handler sees it.

use std::pin::Pin;
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

/// A request's body as the handler sees it: none, for the requests `http1` serves itself
/// (it hands any request with a body to hyper), or hyper's streaming body.
#[derive(Debug)]
pub enum ClientBody {
    Empty,
    Hyper(hyper::body::Incoming),
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(body) => body.size_hint(),
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
}

impl ResponseBody {
    pub fn new(body: Body, guard: RequestGuard, completion: Completion) -> Self {
        ResponseBody {
            body,
            guard: Some(guard),
            completion: Some(completion),
            bytes: 0,
        }
    }

    pub fn take_raw_headers(&mut self) -> Option<RawHeaders> {
        self.body.take_raw_headers()
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
        let polled = Pin::new(&mut this.body).poll_frame(cx);
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
