//! One request/response exchange on an upstream connection, driven by the request's own
//! task: write the head (and stream the body), then read until the response head is in.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request_body::{BodyTooLarge, ClientBodyError, RequestBody};
use super::wire::{self, ParsedResponse, ResponseHead};
use crate::http::chunked;
use crate::sys::socket;

/// Read buffer growth for response heads; a small response arrives whole in one read.
const HEAD_CHUNK: usize = 16 * 1024;
/// Below this much spare room the read buffer grows.
const MIN_READ_ROOM: usize = 4 * 1024;

/// An upstream connection and the bytes read from it but not consumed yet.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// Taken from the pool: the upstream may have closed it meanwhile.
    pub reused: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            reused: false,
        }
    }

    /// Reads more from the upstream into `buf`, growing it by `grow` only when its spare
    /// room runs out (the previous responses' bytes may still be on their way to clients;
    /// the rest of the allocation is ours to fill). `Ok(0)` at end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, grow: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
            self.buf.reserve(grow);
        }
        let spare = self.buf.spare_capacity_mut();
        let n = ready!(socket::poll_recv(&self.stream, cx, spare))?;
        // SAFETY: recv initialised the first `n` bytes of the spare capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Poll::Ready(Ok(n))
    }
}

/// The request as it goes upstream.
pub struct Outgoing {
    /// The encoded head, kept so that a retry writes the same bytes again.
    pub head: Vec<u8>,
    /// The client's body, consumed by the first attempt.
    pub body: Option<RequestBody>,
    /// Whether the body goes out chunked (the client sent no Content-Length).
    pub chunked: bool,
    pub head_request: bool,
    /// The response's headers are wanted as relayed lines (`RawHeaders`), not a map.
    pub raw_headers: bool,
}

/// A response head, and what of the request's body is still to be sent.
pub struct Answered {
    pub head: ResponseHead,
    pub upload: Option<Upload>,
}

#[derive(Debug)]
pub enum ExchangeError {
    /// Closed or reset before any byte of a response arrived.
    Closed(String),
    /// The client's body crossed `max_request_body`.
    TooLarge,
    /// The client's body could not be read.
    ClientBody(String),
    /// The connection failed once a response had begun, or in a way other than a close.
    Broken(String),
    /// The response head does not parse.
    Malformed(String),
}

/// Sends the request and reads the response head. The head goes out at once; the body is
/// sent while the response is awaited, as hyper's client does, so an app that answers
/// before reading the whole body (an early 401 or 413) is heard, and one that streams its
/// answer while still reading (an echo) does not deadlock against us. What is left of the
/// body when the head arrives is returned, to be sent on while the response body is read.
pub async fn exchange(conn: &mut Conn, out: &mut Outgoing) -> Result<Answered, ExchangeError> {
    conn.stream
        .write_all(&out.head)
        .await
        .map_err(write_error)?;
    let mut upload = out.body.take().map(|body| Upload::new(body, out.chunked));
    let mut write_failed = None;
    let mut reading = HeadReading {
        received: !conn.buf.is_empty(),
        scanned: 0,
    };
    let head = poll_fn(|cx| {
        if let Some(sending) = upload.as_mut() {
            match sending.poll_send(&mut conn.stream, cx) {
                Poll::Ready(Ok(())) => upload = None,
                Poll::Ready(Err(e @ (ExchangeError::TooLarge | ExchangeError::ClientBody(_)))) => {
                    return Poll::Ready(Err(e))
                }
                // The app stopped reading: it may still have answered (an early 413).
                Poll::Ready(Err(e)) => {
                    upload = None;
                    write_failed = Some(e);
                }
                Poll::Pending => {}
            }
        }
        match ready!(reading.poll(conn, out, cx)) {
            Ok(head) => Poll::Ready(Ok(head)),
            Err(e) => Poll::Ready(Err(write_failed.take().unwrap_or(e))),
        }
    })
    .await?;
    Ok(Answered { head, upload })
}

/// The client's body on its way upstream.
pub struct Upload {
    body: RequestBody,
    /// Framed bytes not yet written.
    pending: Bytes,
    chunked: bool,
    /// The body has ended (and, chunked, its last chunk is in `pending`).
    ended: bool,
}

impl Upload {
    fn new(body: RequestBody, chunked: bool) -> Self {
        Upload {
            body,
            pending: Bytes::new(),
            chunked,
            ended: false,
        }
    }

    /// Writes what the client has sent so far; ready when the whole body is out.
    pub fn poll_send(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ExchangeError>> {
        loop {
            while !self.pending.is_empty() {
                match ready!(Pin::new(&mut *stream).poll_write(cx, &self.pending)) {
                    Ok(0) => {
                        return Poll::Ready(Err(ExchangeError::Closed(
                            "upstream stopped taking the request body".into(),
                        )))
                    }
                    Ok(n) => self.pending.advance(n),
                    Err(e) => return Poll::Ready(Err(write_error(e))),
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = self.framed(data);
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(body_error(e))),
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
            }
        }
    }

    fn framed(&self, data: Bytes) -> Bytes {
        if !self.chunked || data.is_empty() {
            return data;
        }
        let mut out = Vec::with_capacity(data.len() + 20);
        chunked::put_size(&mut out, data.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        Bytes::from(out)
    }
}

/// Progress reading a response head.
struct HeadReading {
    received: bool,
    scanned: usize,
}

impl HeadReading {
    fn poll(
        &mut self,
        conn: &mut Conn,
        out: &Outgoing,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ResponseHead, ExchangeError>> {
        let (head_request, raw) = (out.head_request, out.raw_headers);
        loop {
            if !conn.buf.is_empty() {
                match wire::parse_response(&mut conn.buf, head_request, raw, &mut self.scanned) {
                    Ok(ParsedResponse::Final(head)) => return Poll::Ready(Ok(head)),
                    Ok(ParsedResponse::Interim) => {
                        self.scanned = 0;
                        continue;
                    }
                    Ok(ParsedResponse::Partial) => {}
                    Err(e) => return Poll::Ready(Err(ExchangeError::Malformed(e.to_string()))),
                }
            }
            match ready!(conn.poll_fill(cx, HEAD_CHUNK)) {
                Ok(0) if !self.received => {
                    return Poll::Ready(Err(ExchangeError::Closed(
                        "connection closed before any response".into(),
                    )))
                }
                Ok(0) => {
                    return Poll::Ready(Err(ExchangeError::Broken(
                        "connection closed in the middle of the response head".into(),
                    )))
                }
                Ok(_) => self.received = true,
                Err(e) => return Poll::Ready(Err(self.read_error(e))),
            }
        }
    }

    fn read_error(&self, e: io::Error) -> ExchangeError {
        match !self.received && closed(&e) {
            true => ExchangeError::Closed(e.to_string()),
            false => ExchangeError::Broken(e.to_string()),
        }
    }
}

fn closed(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn write_error(e: io::Error) -> ExchangeError {
    match closed(&e) {
        true => ExchangeError::Closed(e.to_string()),
        false => ExchangeError::Broken(e.to_string()),
    }
}

fn body_error(e: Box<dyn std::error::Error + Send + Sync>) -> ExchangeError {
    if e.is::<BodyTooLarge>() {
        return ExchangeError::TooLarge;
    }
    match e.downcast::<ClientBodyError>() {
        Ok(client) => ExchangeError::ClientBody(client.to_string()),
        Err(other) => ExchangeError::Broken(other.to_string()),
    }
}
