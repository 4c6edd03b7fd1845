//! The one response body type: a fixed buffer, an upstream's streaming body, or a file
//! streamed from disk (an enum rather than a boxed trait object, so that the hot path
//! allocates nothing to describe a body), with a proxied response's relayed header lines
//! riding along.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::http::file_body::FileBody;
use crate::http::raw_headers::RawHeaders;
use crate::http::upstream::response_body::{Started, UpstreamBody};

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

    pub fn upstream(body: Started) -> Self {
        match body {
            Started::Whole(bytes) => Body::full(bytes),
            Started::Streaming(body) => Body::of(Content::Upstream(body)),
        }
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
