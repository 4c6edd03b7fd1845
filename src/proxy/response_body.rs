//! The upstream's response body, read from the upstream connection as hyper asks for it
//! and decoded (Content-Length, chunked, or until close). Once it has been read to its
//! clean end the connection goes back to the worker's pool; a body dropped early (the
//! client went away) closes it, since it is mid-response.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::uri::Authority;
use http_body::{Body, Frame, SizeHint};

use super::client::UpstreamClient;
use super::exchange::{Conn, Upload};
use super::wire::{Framing, WireError};
use crate::body::Body as ResponseBody;
use crate::http1::chunked::{self, DataEnd, SizeLine};

/// Read buffer growth for bodies (each read is at most one frame).
const BODY_CHUNK: usize = 64 * 1024;
/// Longest trailer section accepted.
const MAX_LINE: usize = 16 * 1024;

pub struct UpstreamBody {
    conn: Option<Conn>,
    /// The rest of the request body, sent on while the response is read (an app that
    /// streams its answer while reading, such as an echo).
    upload: Option<Upload>,
    state: State,
    /// Where the connection goes when the body ended cleanly, if it may be reused.
    home: Option<Home>,
}

pub struct Home {
    pub client: Arc<UpstreamClient>,
    pub authority: Authority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl UpstreamBody {
    /// The response body. When it is already whole in the read buffer (a small response),
    /// it becomes a plain buffer and the connection goes straight back to the pool.
    pub fn start(
        mut conn: Conn,
        framing: Framing,
        home: Option<Home>,
        upload: Option<Upload>,
    ) -> ResponseBody {
        let state = match framing {
            Framing::Empty | Framing::Upgrade => State::Length(0),
            Framing::Length(len) => State::Length(len),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        if let State::Length(len) = state {
            if conn.buf.len() as u64 >= len {
                let bytes = conn.buf.split_to(len as usize).freeze();
                release(conn, home);
                return ResponseBody::full(bytes);
            }
        }
        ResponseBody::upstream(Box::new(UpstreamBody {
            conn: Some(conn),
            upload,
            state,
            home,
        }))
    }

    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            release(conn, self.home.take());
        }
    }
}

/// Back to the pool if the response ended exactly where the buffer does.
fn release(conn: Conn, home: Option<Home>) {
    if let Some(home) = home {
        if conn.buf.is_empty() {
            home.client.checkin(&home.authority, conn);
        }
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
            match this.state {
                State::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                State::Length(0) => this.state = State::Done,
                State::Length(left) | State::ChunkData(left) if !conn.buf.is_empty() => {
                    let take = left.min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(take as usize).freeze();
                    this.state = match this.state {
                        State::ChunkData(_) if take == left => State::ChunkEnd,
                        State::ChunkData(_) => State::ChunkData(left - take),
                        _ => State::Length(left - take),
                    };
                    if this.state == State::Length(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::ChunkSize => match chunked::parse_size_line(&conn.buf) {
                    SizeLine::Complete { used, size: 0 } => {
                        conn.buf.advance(used);
                        this.state = State::Trailers;
                    }
                    SizeLine::Complete { used, size } => {
                        conn.buf.advance(used);
                        this.state = State::ChunkData(size);
                    }
                    SizeLine::Partial => {
                        if ready!(conn.poll_fill(cx, BODY_CHUNK))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                    }
                    SizeLine::Invalid => return Poll::Ready(Some(Err(WireError::Chunked.into()))),
                },
                State::ChunkEnd if !conn.buf.is_empty() => match chunked::data_end(&conn.buf) {
                    DataEnd::Complete(used) => {
                        conn.buf.advance(used);
                        this.state = State::ChunkSize;
                    }
                    DataEnd::Partial => {
                        if ready!(conn.poll_fill(cx, BODY_CHUNK))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                    }
                    DataEnd::Invalid => return Poll::Ready(Some(Err(WireError::Chunked.into()))),
                },
                State::Trailers if !conn.buf.is_empty() => match chunked::trailers_end(&conn.buf) {
                    Some(used) => {
                        conn.buf.advance(used);
                        this.state = State::Done;
                    }
                    None if conn.buf.len() > MAX_LINE => {
                        return Poll::Ready(Some(Err(WireError::Chunked.into())))
                    }
                    None => {
                        if ready!(conn.poll_fill(cx, BODY_CHUNK))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                    }
                },
                State::UntilClose => {
                    if ready!(conn.poll_fill(cx, BODY_CHUNK))? == 0 {
                        // The end of the stream is the end of this body; the connection
                        // is closed, not pooled.
                        this.home = None;
                        this.finish();
                        return Poll::Ready(None);
                    }
                }
                State::Length(_) | State::ChunkData(_) | State::ChunkEnd | State::Trailers => {
                    if ready!(conn.poll_fill(cx, BODY_CHUNK))? == 0 {
                        return Poll::Ready(Some(Err(truncated())));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
