//! One client connection, from accept to close: `h1` reads every head and serves the
//! plain requests; hyper takes one request at a time (a body, `Expect`, HTTP/1.0, a target
//! that is not origin-form) and gives the connection back, or takes the rest of it (h2c, a
//! WebSocket upgrade, a head it refuses); shutdown and the connection's clocks
//! (`conn_clock`) end it. Generic over the socket and over what answers
//! a request (`Respond`), so that the differential fuzzer drives this same loop over an
//! in-memory pipe.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::http::client_body::{BodyEnd, ClientBody};
use crate::http::clocked_io::ClockedIo;
use crate::http::conn_clock::{self, ConnClock, ConnTimeout};
use crate::http::h1;
use crate::http::head;
use crate::http::tracked_body::{Report, TrackedBody};
use crate::sys::gated::Gated;
use crate::sys::socket::Socket;

/// What answers the requests of a connection.
pub trait Respond: Send + Sync + 'static {
    /// What is told when a response is done.
    type Report: Report;

    /// Answers `req`. `ambiguous`: its head had both Content-Length and Transfer-Encoding
    /// (or hyper found a request where none was expected), so it must be refused, never
    /// forwarded. The request counts as in progress (`ConnClock::begin_request`) from the
    /// call until the response body is finished.
    fn respond(
        &self,
        clock: &Arc<ConnClock>,
        req: Request<ClientBody>,
        ambiguous: bool,
    ) -> impl Future<Output = Response<TrackedBody<Self::Report>>> + Send;

    /// `header_read_timeout` and `idle_timeout` now (a reload applies to open connections).
    fn timeouts(&self) -> (Duration, Duration);
}

/// HTTP/1.1 and h2c (an ALB may speak either to its targets). No hyper timer: the
/// header and idle timeouts are `conn_clock`'s. Request heads are limited to 64 KiB, beyond
/// which hyper answers 431 (nginx's default limit is 32 KiB).
pub fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(head::MAX_HEAD);
    builder
}

/// Serves the connection on `stream` until it ends.
pub async fn serve<S: Socket, R: Respond>(
    stream: S,
    ctx: Arc<R>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = ConnClock::new();
    let mut io = ClockedIo::new(stream, Arc::clone(&clock));
    let mut read = Bytes::new();
    loop {
        let Some(ended) = serve_plain(&mut io, read, &ctx, &clock, &mut stop).await else {
            return;
        };
        match ended {
            Ok(h1::Ended::HandOff { read: rest, to }) => {
                io.put_back(rest);
                let h1::Hyper::OneRequest(length) = to else {
                    return serve_with_hyper(io, ctx, clock, builder, stop).await;
                };
                match serve_one_with_hyper(io, length, &ctx, &clock, &mut stop).await {
                    Some((back, rest)) => (io, read) = (back, rest),
                    None => return,
                }
                io.read_by_http1();
            }
            Ok(h1::Ended::Closed) => return,
            Err(e) => return tracing::debug!("connection ended with an error: {e}"),
        }
    }
}

/// `h1` serves the connection, starting with `read`, until it ends (`None`: ended by
/// shutdown or a clock) or a request needs hyper.
async fn serve_plain<S: Socket, R: Respond>(
    io: &mut ClockedIo<S>,
    read: Bytes,
    ctx: &Arc<R>,
    clock: &Arc<ConnClock>,
    stop: &mut watch::Receiver<bool>,
) -> Option<io::Result<h1::Ended>> {
    let state = h1::ConnState::default();
    let conn = &**ctx;
    let served = h1::serve(io, &state, read, move |req| {
        conn.respond(clock, req, clock.take_framing_conflict())
    });
    tokio::pin!(served);
    let control = Gated::new(control(stop, clock, &**ctx));
    tokio::select! {
        biased;
        ended = served.as_mut() => Some(ended),
        control = control => match control {
            ConnEvent::TimedOut(ConnTimeout::Headers) => {
                slow_headers();
                None
            }
            // Between requests at shutdown, the next request may already be on its way
            // (a new connection accepted as shutdown began; a keep-alive client that sends
            // its next request as soon as it has the previous answer): a restart must
            // refuse nothing, so it gets a moment to arrive and is answered with
            // `Connection: close`. A client that sends nothing, or only part of a head,
            // does not hold shutdown up for longer.
            ConnEvent::Stop if !state.is_busy() => {
                state.close_after_this();
                let grace = ctx.timeouts().0.min(h1::NEXT_REQUEST_GRACE);
                tokio::select! {
                    biased;
                    ended = served.as_mut() => Some(ended),
                    _ = tokio::time::sleep(grace) => None,
                }
            }
            ConnEvent::TimedOut(ConnTimeout::Idle) if !state.is_busy() => None,
            // Shutdown: the request in progress finishes (`shutdown_timeout` bounds it).
            ConnEvent::Stop => {
                state.close_after_this();
                Some(served.await)
            }
            // Idle while busy: its response is done but still being written to a
            // client that stopped reading. One more idle period, then it is cut.
            ConnEvent::TimedOut(ConnTimeout::Idle) => {
                state.close_after_this();
                let idle = ctx.timeouts().1;
                tokio::select! {
                    biased;
                    ended = served.as_mut() => Some(ended),
                    _ = tokio::time::sleep(idle) => None,
                }
            }
        }
    }
}

fn slow_headers() {
    tracing::debug!("closing a connection: no complete request headers within header_read_timeout");
}

/// hyper serves one HTTP/1.1 request (its head is in `io`'s put-back bytes, `length` long
/// with its body) and gives the connection back with the bytes it read past that request,
/// or `None` when the connection must end: the client or the response asked for it, the
/// request body was not read to its end (its rest would be taken for a request), hyper
/// failed, or shutdown began.
///
/// hyper is given no byte past the request (`ClockedIo::limit_to`), and is told to stop
/// once the response is finished: its head is written by then, so hyper adds no
/// `Connection: close` to it (it would with keep-alive off from the start).
async fn serve_one_with_hyper<S: Socket, R: Respond>(
    mut io: ClockedIo<S>,
    length: h1::MessageLength,
    ctx: &Arc<R>,
    clock: &Arc<ConnClock>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(ClockedIo<S>, Bytes)> {
    io.limit_to(length);
    let exchange = Arc::new(OneExchange::default());
    let service = {
        let (ctx, clock, exchange) = (Arc::clone(ctx), Arc::clone(clock), Arc::clone(&exchange));
        service_fn(move |req: Request<Incoming>| {
            let (ctx, clock, exchange) =
                (Arc::clone(&ctx), Arc::clone(&clock), Arc::clone(&exchange));
            // Boxed: hyper polls it from `poll_without_shutdown`, which needs it Unpin.
            Box::pin(async move { Ok::<_, Infallible>(exchange.serve(req, &*ctx, &clock).await) })
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The end of the stream it reads after the request is ours (`ClockedIo::limit_to`),
    // not the client's: hyper must still answer.
    builder.max_buf_size(head::MAX_HEAD).half_close(true);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let control = Gated::new(control(stop, clock, &**ctx));
    tokio::pin!(control);
    let (mut asked_to_stop, mut stopping) = (false, false);
    let ended = std::future::poll_fn(|cx| loop {
        if let Poll::Ready(ended) = conn.poll_without_shutdown(cx) {
            return Poll::Ready(Some(ended));
        }
        let answered = exchange.called.load(Ordering::Relaxed) && !clock.in_progress();
        if !asked_to_stop && (answered || stopping) {
            asked_to_stop = true;
            Pin::new(&mut conn).graceful_shutdown();
            continue;
        }
        if stopping {
            return Poll::Pending;
        }
        match control.as_mut().poll(cx) {
            Poll::Ready(ConnEvent::TimedOut(ConnTimeout::Headers)) => return Poll::Ready(None),
            Poll::Ready(ConnEvent::Stop | ConnEvent::TimedOut(ConnTimeout::Idle)) => {
                stopping = true
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    let Some(ended) = ended else {
        slow_headers();
        return None;
    };
    if let Err(e) = ended {
        tracing::debug!("connection ended with an error: {e}");
        return None;
    }
    let reusable =
        exchange.keep.load(Ordering::Relaxed) && !stopping && exchange.body_end.ended().await;
    let parts = conn.into_parts();
    reusable.then(|| (parts.io.into_inner(), parts.read_buf))
}

/// What one request served by hyper left behind, for the connection's next request.
#[derive(Default)]
struct OneExchange {
    called: AtomicBool,
    /// Neither the client nor the response asked for the connection to end.
    keep: AtomicBool,
    body_end: Arc<BodyEnd>,
}

impl OneExchange {
    async fn serve<R: Respond>(
        &self,
        req: Request<Incoming>,
        ctx: &R,
        clock: &Arc<ConnClock>,
    ) -> Response<TrackedBody<R::Report>> {
        if self.called.swap(true, Ordering::Relaxed) {
            // hyper reads no byte past the first request; were it ever to find a second,
            // it would not be trusted.
            let req = req.map(|body| ClientBody::hyper(body, None));
            return respond_mapped(ctx, clock, req, true).await;
        }
        // An HTTP/1.0 client keeps the connection only when it says so.
        let asked_close = connection_has(req.headers(), b"close")
            || (req.version() == http::Version::HTTP_10
                && !connection_has(req.headers(), b"keep-alive"));
        let end = Some(Arc::clone(&self.body_end));
        let req = req.map(|body| ClientBody::hyper(body, end));
        let ambiguous = clock.take_framing_conflict();
        let res = respond_mapped(ctx, clock, req, ambiguous).await;
        let keep = !asked_close && !connection_has(res.headers(), b"close");
        self.keep.store(keep, Ordering::Relaxed);
        res
    }
}

/// Whether a `Connection` field of `headers` has the option `token`.
fn connection_has(headers: &http::HeaderMap, token: &[u8]) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| head::has_token(v.as_bytes(), token))
}

/// The rest of a connection whose requests `h1` does not serve itself.
async fn serve_with_hyper<S: Socket, R: Respond>(
    io: ClockedIo<S>,
    ctx: Arc<R>,
    clock: Arc<ConnClock>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    let control_ctx = Arc::clone(&ctx);
    let request_clock = Arc::clone(&clock);
    let service = service_fn(move |req: Request<Incoming>| {
        let ctx = Arc::clone(&ctx);
        let clock = Arc::clone(&request_clock);
        async move {
            let upgrade = req.version() != http::Version::HTTP_2;
            let req = req.map(|body| ClientBody::hyper(body, None));
            let ambiguous = clock.take_framing_conflict();
            let mut res = respond_mapped(&*ctx, &clock, req, ambiguous).await;
            if upgrade && res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                // A WebSocket handshake that did not switch leaves an HTTP/1.1 connection
                // whose later requests only hyper would read: end it instead, so that every
                // head on a connection is read, scanned and timed by `h1`.
                let close = http::HeaderValue::from_static("close");
                res.headers_mut().insert(http::header::CONNECTION, close);
            }
            Ok::<_, Infallible>(res)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let control = Gated::new(control(&mut stop, &clock, &*control_ctx));
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        control = control => match control {
            ConnEvent::Stop | ConnEvent::TimedOut(ConnTimeout::Idle) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            ConnEvent::TimedOut(ConnTimeout::Headers) => return slow_headers(),
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// `respond` for hyper, which writes headers from the map only.
async fn respond_mapped<R: Respond>(
    ctx: &R,
    clock: &Arc<ConnClock>,
    req: Request<ClientBody>,
    ambiguous: bool,
) -> Response<TrackedBody<R::Report>> {
    let mut res = ctx.respond(clock, req, ambiguous).await;
    if let Some(raw) = res.body_mut().take_raw_headers() {
        raw.into_map(res.headers_mut());
    }
    res
}

/// Resolves when the connection is asked to end: shutdown, or one of its clocks ran out.
async fn control<R: Respond>(
    stop: &mut watch::Receiver<bool>,
    clock: &ConnClock,
    ctx: &R,
) -> ConnEvent {
    tokio::select! {
        _ = stopped(stop) => ConnEvent::Stop,
        expired = watchdog(clock, ctx) => ConnEvent::TimedOut(expired),
    }
}

/// Why a connection is asked to end other than by its client.
enum ConnEvent {
    Stop,
    TimedOut(ConnTimeout),
}

/// Resolves when one of the connection's clocks runs out (timeouts from the snapshot in
/// force, so a reload applies to open connections too).
async fn watchdog<R: Respond>(clock: &ConnClock, ctx: &R) -> ConnTimeout {
    loop {
        let (header, idle) = ctx.timeouts();
        tokio::time::sleep(conn_clock::tick(header, idle)).await;
        if let Some(expired) = clock.expired(header, idle) {
            return expired;
        }
    }
}

/// Resolves once shutdown has begun (or the server is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
