//! The upstream's response body, read from the upstream connection as hyper asks for it
//! and decoded (Content-Length, chunked, or until close). Once it has been read to its
//! clean end the connection goes back to the worker's pool; a body dropped early (the
//! client went away) closes it, since it is mid-response.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::uri::Authority;
use http_body::{Body, Frame, SizeHint};

use super::exchange::{Conn, Upload};
use super::pool::UpstreamClient;
use super::wire::{Framing, WireError};
use crate::http::chunked::{self, DataEnd, SizeLine, TrailersEnd};
use crate::http::upstream::failure::UpstreamFailure;

/// Read buffer growth for bodies (each read is at most one frame).
const BODY_CHUNK: usize = 64 * 1024;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

pub struct UpstreamBody {
    conn: Option<Conn>,
    /// The rest of the request body, sent on while the response is read (an app that
    /// streams its answer while reading, such as an echo).
    upload: Option<Upload>,
    decoder: Decoder,
    /// Where the connection goes when the body ended cleanly, if it may be reused.
    home: Option<PoolReturn>,
}

pub struct PoolReturn {
    pub client: Arc<UpstreamClient>,
    pub authority: Authority,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A response body's framing, decoded from the bytes read so far. No I/O: the same code
/// reads proxied responses here and the differential fuzzer's byte streams.
#[derive(Debug)]
pub struct Decoder {
    state: DecodeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

/// What the buffered bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// Nothing more until more bytes arrive (or the stream ends: `Decoder::at_end`).
    More,
    Done,
    Invalid,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Upgrade => DecodeState::Length(0),
            Framing::Length(len) => DecodeState::Length(len),
            Framing::Chunked => DecodeState::ChunkSize,
            Framing::UntilClose => DecodeState::UntilClose,
        };
        Decoder { state }
    }

    /// Whether the body has ended (its last data may just have been returned).
    pub fn is_done(&self) -> bool {
        matches!(self.state, DecodeState::Done | DecodeState::Length(0))
    }

    /// The body's length if it is known and the whole of it is in `buf`.
    fn whole_in(&self, buf: &[u8]) -> Option<u64> {
        match self.state {
            DecodeState::Length(len) if buf.len() as u64 >= len => Some(len),
            _ => None,
        }
    }

    /// Takes what it can from `buf`: body data, or the framing around it.
    pub fn step(&mut self, buf: &mut BytesMut) -> Step {
        loop {
            match self.state {
                DecodeState::Done => return Step::Done,
                DecodeState::Length(0) => self.state = DecodeState::Done,
                DecodeState::Length(left) | DecodeState::ChunkData(left) if !buf.is_empty() => {
                    let take = left.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    self.state = match self.state {
                        DecodeState::ChunkData(_) if take == left => DecodeState::ChunkEnd,
                        DecodeState::ChunkData(_) => DecodeState::ChunkData(left - take),
                        _ => DecodeState::Length(left - take),
                    };
                    return Step::Data(data);
                }
                DecodeState::UntilClose if !buf.is_empty() => {
                    return Step::Data(buf.split().freeze())
                }
                DecodeState::ChunkSize => match chunked::parse_size_line(buf) {
                    SizeLine::Complete { used, size } => {
                        buf.advance(used);
                        self.state = match size {
                            0 => DecodeState::Trailers,
                            size => DecodeState::ChunkData(size),
                        };
                    }
                    SizeLine::Partial => return Step::More,
                    SizeLine::Invalid => return Step::Invalid,
                },
                DecodeState::ChunkEnd => match chunked::data_end(buf) {
                    DataEnd::Complete(used) => {
                        buf.advance(used);
                        self.state = DecodeState::ChunkSize;
                    }
                    DataEnd::Partial => return Step::More,
                    DataEnd::Invalid => return Step::Invalid,
                },
                DecodeState::Trailers => match chunked::trailers_end(buf) {
                    TrailersEnd::Complete(used) => {
                        buf.advance(used);
                        self.state = DecodeState::Done;
                    }
                    TrailersEnd::Partial if buf.len() <= MAX_TRAILERS => return Step::More,
                    TrailersEnd::Partial | TrailersEnd::Invalid => return Step::Invalid,
                },
                DecodeState::Length(_) | DecodeState::ChunkData(_) | DecodeState::UntilClose => {
                    return Step::More
                }
            }
        }
    }

    /// The stream ended: the end of a close-delimited body, a truncation of any other.
    pub fn at_end(&mut self) -> bool {
        match self.state {
            DecodeState::UntilClose | DecodeState::Done | DecodeState::Length(0) => {
                self.state = DecodeState::Done;
                true
            }
            _ => false,
        }
    }
}

/// How an upstream response body starts out.
pub enum Started {
    /// Already whole in the read buffer (the connection is back in the pool).
    Whole(Bytes),
    /// Still to be read from the connection.
    Streaming(Box<UpstreamBody>),
}

impl UpstreamBody {
    /// The response body. When it is already whole in the read buffer (a small response),
    /// it becomes a plain buffer and the connection goes straight back to the pool.
    pub fn start(
        mut conn: Conn,
        framing: Framing,
        home: Option<PoolReturn>,
        upload: Option<Upload>,
    ) -> Started {
        let decoder = Decoder::new(framing);
        if let Some(len) = decoder.whole_in(&conn.buf) {
            let bytes = conn.buf.split_to(len as usize).freeze();
            release(conn, home);
            return Started::Whole(bytes);
        }
        Started::Streaming(Box::new(UpstreamBody {
            conn: Some(conn),
            upload,
            decoder,
            home,
        }))
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            release(conn, self.home.take());
        }
    }
}

/// Back to the pool if the response ended exactly where the buffer does.
fn release(conn: Conn, home: Option<PoolReturn>) {
    if let Some(home) = home {
        if conn.buf.is_empty() {
            home.client.checkin(&home.authority, conn);
        }
    }
}

/// How a response body that broke off counts among upstream failures: framing that does
/// not parse, or a cut (the upstream closed or reset the connection mid-body).
pub fn body_failure(e: &Error) -> UpstreamFailure {
    match e.is::<WireError>() {
        true => UpstreamFailure::BadResponse,
        false => UpstreamFailure::Truncated,
    }
}

fn truncated() -> Error {
    "upstream closed the connection in the middle of the response body".into()
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let (Some(sending), Some(conn)) = (this.upload.as_mut(), this.conn.as_mut()) {
            // Done or failed, there is nothing more to send; the response goes on.
            if sending.poll_send(&mut conn.stream, cx).is_ready() {
                this.upload = None;
            }
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.buf) {
                Step::Data(data) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::Invalid => return Poll::Ready(Some(Err(WireError::Chunked.into()))),
                Step::More => {
                    if ready!(conn.poll_fill(cx, BODY_CHUNK))? > 0 {
                        continue;
                    }
                    if !this.decoder.at_end() {
                        return Poll::Ready(Some(Err(truncated())));
                    }
                    // The end of the stream is the end of this body; the connection is
                    // closed, not pooled.
                    this.home = None;
                    this.finish();
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.state {
            DecodeState::Length(left) => SizeHint::with_exact(left),
            DecodeState::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
