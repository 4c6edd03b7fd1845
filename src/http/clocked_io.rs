//! The connection's socket as the servers read it: it starts the header clock when a
//! request's first byte arrives (`conn_clock`), puts back bytes read ahead of a hand-over
//! to hyper, limits hyper to one request's bytes, and feeds each request head to the
//! smuggling scan.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::conn_clock::ConnClock;
use crate::http::smuggling::HeadScan;
use crate::http::{chunked, h1::request::MessageLength};
use crate::sys::socket::Socket;

/// The connection's socket, telling the clock when bytes arrive and scanning each request
/// head for conflicting framing headers.
pub struct ClockedIo<S = TcpStream> {
    inner: S,
    /// Bytes already read (and seen by the clock), put back to be read again (`h1`
    /// handing a connection to hyper).
    put_back: Bytes,
    clock: Arc<ConnClock>,
    head: HeadScan,
    /// What hyper may still read of the one request it was given (`limit_to`).
    limit: Option<Limit>,
    /// Heads are scanned only once hyper reads the connection: `h1` hands every head
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
        self.scan_heads = !self.clock.is_h2();
        self.head.start();
        if self.scan_heads && self.head.feed(&bytes) == Some(true) {
            self.clock.mark_framing_conflict();
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

    /// `h1` reads the connection again (after one request hyper served): it reads every
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
                this.clock.mark_framing_conflict();
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
