//! The body sent upstream: the client's body streamed as it arrives, cut off with an error
//! when it crosses `max_request_body` (a chunked body cannot be refused up front the way a
//! declared Content-Length is).

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::http::client_body::ClientBody;

pub struct RequestBody {
    inner: Option<ClientBody>,
    remaining: u64,
}

/// The body crossed `max_request_body`; found again in the client's error chain to answer
/// 413 instead of 502.
#[derive(Debug)]
pub struct BodyTooLarge;

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body larger than max_request_body")
    }
}

impl StdError for BodyTooLarge {}

/// The client's body could not be read (malformed chunked encoding, client gone): the
/// client's fault, answered 400 rather than blamed on the upstream.
#[derive(Debug)]
pub struct ClientBodyError(hyper::Error);

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the request body: {}", self.0)
    }
}

impl StdError for ClientBodyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

impl RequestBody {
    pub fn streaming(body: ClientBody, limit: u64) -> Self {
        RequestBody {
            inner: Some(body),
            remaining: limit,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(Box::new(ClientBodyError(e))))),
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > this.remaining {
                this.inner = None;
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
            }
            this.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint())
    }
}
