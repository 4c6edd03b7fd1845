//! HTTP/1.1 for plain requests, served without hyper; hyper takes over a connection at
//! the first request that is not plain.
//!
//! Why hand-written: hyper's server (parsing into its own structures, encoding, its
//! dispatcher's state machine and per-request allocations) kept the CPU per proxied
//! request above nginx's (`benches/README.md`). Nearly all traffic behind a load balancer is
//! the plain case: HTTP/1.1 keep-alive requests without a body. Those are parsed with
//! httparse (as hyper does) into the same `http::Request`, and the response is written
//! with the framing hyper would choose (`response`).
//!
//! Anything else hands the connection, with every byte read so far put back, to hyper,
//! so each unusual case keeps hyper's behaviour and its answers (400, 431, 100-continue):
//! for one request when it has a body, `Expect`, HTTP/1.0 or a target that is not
//! origin-form (the connection then comes back here), for the rest of its life when it is
//! h2c, a WebSocket upgrade or a head hyper will refuse (`request::Hyper`).

pub mod request;
mod response;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::client_body::ClientBody;
use crate::http::clocked_io::ClockedIo;
use crate::http::tracked_body::{Report, TrackedBody};
use crate::sys::socket::Socket;
use request::ParsedRequest;
pub use request::{Hyper, MessageLength};

/// How much is read at a time (hyper's initial read buffer is the same).
const READ_SIZE: usize = 8 * 1024;
/// A connection keeps at most this much output buffer between requests.
const KEEP_OUT: usize = 16 * 1024;
/// How long shutdown waits for a request that may be on its way on a connection with none
/// in progress (a restart refuses nothing a client already sent or is sending).
pub const NEXT_REQUEST_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How a connection left `serve`.
pub enum Ended {
    /// Closed, by the client or after a response that ended the connection.
    Closed,
    /// hyper serves the next request (`Hyper::OneRequest`) or the rest, starting with
    /// these bytes (read, not consumed).
    HandOff { read: Bytes, to: Hyper },
}

/// What the connection's controller (shutdown, idle timeout) needs to know and say.
#[derive(Default)]
pub struct ConnState {
    busy: AtomicBool,
    closing: AtomicBool,
}

impl ConnState {
    /// A request is in progress: from its whole head to the last byte of its response.
    /// Otherwise the connection can be closed without cutting anything (a partly read
    /// head counts as nothing, as in hyper's graceful shutdown).
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    /// Ends the connection after the response in progress (with `Connection: close`, if
    /// its head has not been written yet).
    pub fn close_after_this(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// Serves plain requests on `io` with `respond`, starting with the bytes already read
/// (`read`, from hyper), until the connection ends or a request needs hyper.
pub async fn serve<S, R, F, Fut>(
    io: &mut ClockedIo<S>,
    state: &ConnState,
    read: Bytes,
    mut respond: F,
) -> io::Result<Ended>
where
    S: Socket,
    R: Report,
    F: FnMut(Request<ClientBody>) -> Fut,
    Fut: Future<Output = Response<TrackedBody<R>>>,
{
    let mut input = BytesMut::from(read);
    let mut out = Vec::new();
    // Asked to close after a response whose head had already promised keep-alive: the
    // client may be sending its next request already, so it gets the shutdown grace.
    let mut promised = false;
    loop {
        let head = match promised {
            false => read_head(io, &mut input).await?,
            true => match tokio::time::timeout(NEXT_REQUEST_GRACE, read_head(io, &mut input)).await
            {
                Ok(head) => head?,
                Err(_) => None,
            },
        };
        let (req, close) = match head {
            Some(ParsedRequest::Plain { req, close }) => (req, close),
            Some(ParsedRequest::HandOff { head, to }) => {
                let read = join(head, input);
                return Ok(Ended::HandOff { read, to });
            }
            Some(ParsedRequest::Partial) | None => return Ok(Ended::Closed),
        };
        state.busy.store(true, Ordering::Relaxed);
        let head_request = req.method() == Method::HEAD;
        let res = respond(req).await;
        let close = close || state.closing.load(Ordering::Relaxed);
        let answering = response::Answering {
            head_request,
            close,
        };
        let again = response::write(io, &mut out, res, answering).await?;
        state.busy.store(false, Ordering::Relaxed);
        // Asked to close while the response was on its way: now is the moment, unless the
        // response said keep-alive (then once the next request is answered, with close).
        if !again || (close && state.closing.load(Ordering::Relaxed)) {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
        promised = state.closing.load(Ordering::Relaxed);
        out.clear();
        out.shrink_to(KEEP_OUT);
    }
}

/// Reads until a whole head is buffered; `None` when the client closed first.
async fn read_head<S: Socket>(
    io: &mut ClockedIo<S>,
    input: &mut BytesMut,
) -> io::Result<Option<ParsedRequest>> {
    let mut scanned = 0;
    if !input.is_empty() {
        // Pipelined bytes: no read will start the header clock for them.
        io.head_begun();
    }
    loop {
        match request::parse(input, &mut scanned) {
            ParsedRequest::Partial => {}
            parsed => return Ok(Some(parsed)),
        }
        if input.capacity() - input.len() < READ_SIZE / 4 {
            input.reserve(READ_SIZE);
        }
        let n = io.read_buf(input).await?;
        if n == 0 {
            return Ok(None);
        }
    }
}

fn join(head: Bytes, rest: BytesMut) -> Bytes {
    if head.is_empty() {
        return rest.freeze();
    }
    let mut all = BytesMut::with_capacity(head.len() + rest.len());
    all.extend_from_slice(&head);
    all.extend_from_slice(&rest);
    all.freeze()
}
