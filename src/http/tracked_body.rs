//! The response body as the server sends it, and what is told when it is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::http::body::Body;
use crate::http::conn_clock::RequestGuard;
use crate::http::file_body::FileBody;
use crate::http::raw_headers::RawHeaders;
use crate::http::upstream::failure::UpstreamFailure;
use crate::http::upstream::response_body::body_failure;

/// Told when a response is done (the serving layer's access log and metrics).
pub trait Report: Send + Unpin + 'static {
    /// The body broke off after its head was sent.
    fn body_failed(&mut self, failure: UpstreamFailure);
    /// The body ended (or was dropped) after `bytes` bytes.
    fn finish(self, bytes: u64);
}

/// A response nothing reports (the differential fuzzer's).
impl Report for () {
    fn body_failed(&mut self, _: UpstreamFailure) {}
    fn finish(self, _: u64) {}
}

/// The response body as sent (by `h1` or hyper): a `Body` that keeps its request counted
/// as in progress (for the idle clock) until its last frame is out or it is dropped, then
/// has `R` report the request with the bytes actually sent.
pub struct TrackedBody<R: Report = ()> {
    body: Body,
    guard: Option<RequestGuard>,
    report: Option<R>,
    bytes: u64,
    /// The body broke off: reported on the poll after the one that found it, so that
    /// hyper, which drops its unwritten output on a body error, first writes what came
    /// (SPEC: a cut response reaches the client as far as it came).
    broken: Option<BoxError>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<R: Report> TrackedBody<R> {
    pub fn new(body: Body, guard: RequestGuard, report: R) -> Self {
        TrackedBody {
            body,
            guard: Some(guard),
            report: Some(report),
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
        if let Some(c) = self.report.take() {
            c.finish(self.bytes);
        }
    }
}

impl<R: Report> Drop for TrackedBody<R> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<R: Report> HttpBody for TrackedBody<R> {
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
            if let Some(c) = this.report.as_mut() {
                c.body_failed(body_failure(&e));
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
