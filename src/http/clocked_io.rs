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

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::smuggling::HeadScan;
use crate::http::{chunked, h1::request::MessageLength};
use crate::sys::coarse_clock;
use crate::sys::socket::Socket;

const NOT_READING: u64 = u64::MAX;

/// The clocks of one connection, as nanoseconds since it was accepted.
pub struct ConnClock {
    /// `coarse_clock` time of the accept.
    start: Duration,
    active: AtomicU32,
    idle_since: AtomicU64,
    header_since: AtomicU64,
    /// The head being read has both Content-Length and Transfer-Encoding (`framing`).
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
    fn on_read(&self) -> bool {
        let starts = !self.h2.load(Ordering::Relaxed)
            && self.active.load(Ordering::Relaxed) == 0
            && self.header_since.load(Ordering::Relaxed) == NOT_READING;
        if starts {
            self.header_since.store(self.now(), Ordering::Relaxed);
        }
        starts
    }

    /// The client sent the HTTP/2 preface.
    fn mark_h2(&self) {
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

/// The connection's socket, telling the clock when bytes arrive and scanning each request
/// head for conflicting framing headers.
pub struct ClockedIo<S = TcpStream> {
    inner: S,
    /// Bytes already read (and seen by the clock), put back to be read again (`http1`
    /// handing a connection to hyper).
    put_back: Bytes,
    clock: Arc<ConnClock>,
    head: HeadScan,
    /// What hyper may still read of the one request it was given (`limit_to`).
    limit: Option<Limit>,
    /// Heads are scanned only once hyper reads the connection: `http1` hands every head
    /// with Transfer-Encoding to hyper, so the requests it serves itself need no scan.
    scan_heads: bool,
    seen_bytes: bool,
}

/// The start of the HTTP/2 connection preface (h2c with prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<S: Socket> ClockedIo<S> {
    pub fn new(inner: S, clock: Arc<ConnClock>) -> Self {
        ClockedIo {
            inner,
            put_back: Bytes::new(),
            clock,
            head: HeadScan::default(),
            limit: None,
            scan_heads: false,
            seen_bytes: false,
        }
    }
}

impl<S: Socket> ClockedIo<S> {
    /// A request head has begun with bytes read earlier (behind the previous request):
    /// its header clock starts now, as it would have at their arrival.
    pub fn head_begun(&self) {
        self.clock.on_read();
    }

    /// hyper reads the connection from here on, starting again with `bytes` (the start
    /// of a request head and whatever followed it), which are scanned as they would have
    /// been had hyper read them the first time.
    pub fn put_back(&mut self, bytes: Bytes) {
        self.scan_heads = !self.clock.h2.load(Ordering::Relaxed);
        self.head.start();
        if self.scan_heads && self.head.feed(&bytes) == Some(true) {
            self.clock.framing_conflict.store(true, Ordering::Relaxed);
        }
        self.put_back = bytes;
    }
}

/// The rest of one request, as far as reads may go.
enum Limit {
    Bytes(u64),
    Chunked {
        head: u64,
        body: chunked::ChunkedEnd,
    },
}

impl Limit {
    fn is_spent(&self) -> bool {
        match self {
            Limit::Bytes(left) => *left == 0,
            Limit::Chunked { head, body } => *head == 0 && body.is_spent(),
        }
    }

    /// How many of `bytes` still belong to the request.
    fn take(&mut self, bytes: &[u8]) -> usize {
        match self {
            Limit::Bytes(left) => {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                take as usize
            }
            Limit::Chunked { head, body } => {
                let in_head = (*head).min(bytes.len() as u64);
                *head -= in_head;
                let in_head = in_head as usize;
                in_head + body.feed(&bytes[in_head..])
            }
        }
    }
}

impl<S: Socket> ClockedIo<S> {
    /// Reads end with the request that starts at the next byte (`length` long): hyper,
    /// given one request, must see no byte of the next.
    pub fn limit_to(&mut self, length: MessageLength) {
        self.limit = Some(match length {
            MessageLength::Bytes(n) => Limit::Bytes(n),
            MessageLength::Chunked { head } => Limit::Chunked {
                head,
                body: chunked::ChunkedEnd::default(),
            },
        });
    }

    /// `http1` reads the connection again (after one request hyper served): it reads every
    /// head itself, so none needs the scan; bytes held back from hyper begin a request.
    pub fn read_by_http1(&mut self) {
        self.scan_heads = false;
        self.limit = None;
        if !self.put_back.is_empty() {
            self.clock.on_read();
        }
    }

    /// Keeps only the bytes of `buf` past `before` that belong to the limited request;
    /// the rest goes back in front of the put-back bytes.
    fn hold_back(&mut self, buf: &mut ReadBuf<'_>, before: usize) {
        let Some(limit) = self.limit.as_mut() else {
            return;
        };
        let fresh = &buf.filled()[before..];
        let keep = limit.take(fresh);
        if keep < fresh.len() {
            let mut back = bytes::BytesMut::with_capacity(fresh.len() - keep + self.put_back.len());
            back.extend_from_slice(&fresh[keep..]);
            back.extend_from_slice(&self.put_back);
            self.put_back = back.freeze();
            buf.set_filled(before + keep);
        }
    }
}

impl<S: Socket> AsyncRead for ClockedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if !self.put_back.is_empty() {
            let n = buf.remaining().min(self.put_back.len());
            buf.put_slice(&self.put_back[..n]);
            self.put_back.advance(n);
            // Past the end of the request hyper was given, it reads the end of the stream:
            // if it agrees the request is whole, it answers and stops (half-close); if it
            // wanted more, the body fails and the connection ends. It never sees the next
            // request, and never waits for bytes it will not get.
            self.hold_back(buf, before);
            return Poll::Ready(Ok(()));
        }
        if self.limit.as_ref().is_some_and(Limit::is_spent) {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        // SAFETY: recv only writes initialised bytes into the unfilled part, and exactly
        // the bytes it reports are marked filled.
        let result = this
            .inner
            .poll_recv(cx, unsafe { buf.unfilled_mut() })
            .map_ok(|n| unsafe {
                buf.assume_init(n);
                buf.advance(n);
            });
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let fresh = &buf.filled()[before..];
            if before == 0 && !this.seen_bytes && fresh.starts_with(H2_PREFACE) {
                this.clock.mark_h2();
                this.scan_heads = false;
            }
            this.seen_bytes = true;
            this.hold_back(buf, before);
            let fresh = &buf.filled()[before..];
            if this.clock.on_read() {
                this.head.start();
            }
            if this.scan_heads && this.head.feed(fresh) == Some(true) {
                this.clock.framing_conflict.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}

impl<S: Socket> ClockedIo<S> {
    /// `sendfile` on the socket (see `Socket::poll_sendfile`).
    pub fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_sendfile(cx, file, offset, len)
    }

    /// See `Socket::set_cork`.
    pub fn set_cork(&self, on: bool) {
        self.inner.set_cork(on);
    }
}

impl<S: Socket> AsyncWrite for ClockedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
