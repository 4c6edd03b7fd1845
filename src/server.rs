//! Listeners, worker threads, the accept loop, the connection limit and graceful shutdown.
//!
//! One listening socket per address, bound once; every worker thread (one per core, see
//! `worker`) accepts on its own duplicate of it, so whichever worker is idle takes the next
//! connection, and hands it to another worker if it is already ahead (`balance`). No
//! SO_REUSEPORT: with it a second, accidentally started instance would
//! silently share the port instead of failing to start.
//!
//! Each connection holds one permit of a semaphore sized `max_connections`: accepting
//! waits for a permit when the host is full (the kernel backlog absorbs the burst), and
//! shutdown knows every connection has finished when it can take all the permits back.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::balance::{Accepted, Balance, Handoff};
use crate::body::{BodyEnd, ClientBody, ResponseBody};
use crate::deadlines;
use crate::error::RequestError;
use crate::gated::Gated;
use crate::handler;
use crate::http1;
use crate::metrics::RouteKind;
use crate::observe::{Completion, RequestFacts, Served};
use crate::proxy::{ConnPermit, Peer};
use crate::snapshot::Shared;
use crate::timeouts::{self, ClockedIo, ConnClock, Expired};
use crate::worker::Worker;

const BACKLOG: u32 = 4096;

/// Binds every address before anything is served, so a port conflict fails startup.
/// Must run inside a tokio runtime.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, (SocketAddr, io::Error)> {
    addrs
        .iter()
        .map(|addr| bind_one(*addr).map_err(|e| (*addr, e)))
        .collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// The running server: worker threads plus the means to stop them.
pub struct Server {
    stop: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    max_connections: u32,
}

/// What every request on one connection shares.
struct ConnContext {
    shared: Arc<Shared>,
    worker: Arc<Worker>,
    peer: Peer,
    /// The connection's slot under `max_connections`, released when the connection ends,
    /// or handed to the tunnel when the connection is upgraded (a WebSocket outlives the
    /// HTTP connection it started on and must keep counting, so shutdown waits for it).
    permit: ConnPermit,
}

impl Server {
    /// Starts `workers` threads, each accepting on every listener.
    pub fn start(
        listeners: &[std::net::TcpListener],
        shared: &Arc<Shared>,
        max_connections: usize,
        workers: usize,
    ) -> io::Result<Self> {
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS) as u32;
        let permits = Arc::new(Semaphore::new(max_connections as usize));
        let (stop, _) = watch::channel(false);
        let (balance, inboxes) = Balance::new(workers.max(1));
        for (id, inbox) in inboxes.into_iter().enumerate() {
            let own: Vec<std::net::TcpListener> = listeners
                .iter()
                .map(|l| l.try_clone())
                .collect::<io::Result<_>>()?;
            let common = Common {
                shared: Arc::clone(shared),
                permits: Arc::clone(&permits),
                stop: stop.subscribe(),
                balance: Arc::clone(&balance),
            };
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || run_worker(id, own, inbox, common))?;
        }
        Ok(Server {
            stop,
            permits,
            max_connections,
        })
    }

    /// Stops accepting, asks every connection to finish its in-flight request and close,
    /// and waits up to `timeout` for them. Returns how many were still open.
    pub async fn shutdown(self, timeout: Duration) -> usize {
        let _ = self.stop.send(true);
        let all = self.permits.acquire_many(self.max_connections);
        match tokio::time::timeout(timeout, all).await {
            Ok(_) => 0,
            Err(_) => self.max_connections as usize - self.permits.available_permits(),
        }
    }
}

/// What every worker shares.
struct Common {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    balance: Arc<Balance>,
}

/// One worker as its accept loops and connections see it.
struct WorkerCtx {
    id: usize,
    common: Common,
    worker: Arc<Worker>,
    builder: auto::Builder<TokioExecutor>,
}

fn run_worker(
    id: usize,
    listeners: Vec<std::net::TcpListener>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
    common: Common,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker thread cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let worker = Arc::new(Worker::new(
            &common.shared.load().config.proxy,
            common.shared.metrics.shard(),
        ));
        tokio::spawn(housekeeping(Arc::clone(&worker)));
        let ctx = Arc::new(WorkerCtx {
            id,
            common,
            worker,
            builder: http_builder(),
        });
        let mut loops = JoinSet::new();
        loops.spawn(receive_handoffs(inbox, Arc::clone(&ctx)));
        for listener in listeners {
            let listener = match listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(listener))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("worker cannot use its listener: {e}");
                    continue;
                }
            };
            loops.spawn(accept_loop(listener, Arc::clone(&ctx)));
        }
        while loops.join_next().await.is_some() {}
        // Upgraded connections (WebSockets) are tasks of their own that may outlive every
        // loop: keep the runtime alive. The control thread ends the process once they are
        // done or `shutdown_timeout` has passed.
        std::future::pending::<()>().await;
    });
}

/// Response deadlines swept every `deadlines::TICK`, idle upstream connections reaped
/// every second.
async fn housekeeping(worker: Arc<Worker>) {
    let mut tick = tokio::time::interval(deadlines::TICK);
    for n in 0u64.. {
        tick.tick().await;
        worker.deadlines.sweep();
        if n % 10 == 0 {
            worker.reap_idle_connections();
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<WorkerCtx>) {
    let mut stop = ctx.common.stop.clone();
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&ctx.common.permits).acquire_owned() => p,
            Some(_) = connections.join_next() => continue,
            _ = stopped(&mut stop) => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a full fd table.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let to = ctx.common.balance.pick(ctx.id);
        let conn = Accepted {
            stream,
            peer,
            permit,
            open: ctx.common.balance.open(to),
        };
        let conn = match to == ctx.id {
            true => conn,
            false => match hand_over(&ctx, to, conn) {
                Some(back) => back,
                None => continue,
            },
        };
        spawn_connection(&mut connections, &ctx, conn);
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Sends a connection to worker `to`: `None` once that worker has it, the connection
/// back (counted here again) when it could not be sent.
fn hand_over(ctx: &WorkerCtx, to: usize, conn: Accepted<TcpStream>) -> Option<Accepted<TcpStream>> {
    let handoff = conn
        .convert(TcpStream::into_std)
        .map_err(|e| tracing::debug!("cannot hand a connection over: {e}"))
        .ok()?;
    let back = ctx.common.balance.send(to, handoff).err()?;
    let mut back = back
        .convert(TcpStream::from_std)
        .map_err(|e| tracing::debug!("cannot take a connection back: {e}"))
        .ok()?;
    back.open = ctx.common.balance.open(ctx.id);
    Some(back)
}

/// Serves the connections other workers hand over.
async fn receive_handoffs(mut inbox: mpsc::UnboundedReceiver<Handoff>, ctx: Arc<WorkerCtx>) {
    let mut stop = ctx.common.stop.clone();
    let mut connections = JoinSet::new();
    loop {
        let handoff = tokio::select! {
            h = inbox.recv() => h,
            Some(_) = connections.join_next() => continue,
            _ = stopped(&mut stop) => break,
        };
        let Some(h) = handoff else { break };
        match h.convert(TcpStream::from_std) {
            Ok(conn) => spawn_connection(&mut connections, &ctx, conn),
            Err(e) => tracing::debug!("cannot take over a connection: {e}"),
        }
    }
    while connections.join_next().await.is_some() {}
}

fn spawn_connection(
    connections: &mut JoinSet<()>,
    ctx: &Arc<WorkerCtx>,
    conn: Accepted<TcpStream>,
) {
    let Accepted {
        stream,
        peer,
        permit,
        open,
    } = conn;
    let conn = Arc::new(ConnContext {
        shared: Arc::clone(&ctx.common.shared),
        worker: Arc::clone(&ctx.worker),
        peer: Peer::new(peer.ip().to_canonical()),
        permit: ConnPermit::new(permit),
    });
    let ctx = Arc::clone(ctx);
    connections.spawn(async move {
        let _open = open;
        let metrics = &ctx.common.shared.metrics;
        metrics.open_connections.fetch_add(1, Ordering::Relaxed);
        serve_connection(stream, conn, &ctx.builder, ctx.common.stop.clone()).await;
        metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
    });
}

/// HTTP/1.1 and h2c (an ALB may speak either to its targets). No hyper timer: the
/// header and idle timeouts are `timeouts`'s. Request heads are limited to 64 KiB, beyond
/// which hyper answers 431 (nginx's default limit is 32 KiB).
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_REQUEST_HEAD);
    builder
}

const MAX_REQUEST_HEAD: usize = 64 * 1024;

async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<ConnContext>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let clock = ConnClock::new();
    let mut io = ClockedIo::new(stream, Arc::clone(&clock));
    let mut read = Bytes::new();
    loop {
        let Some(ended) = serve_plain(&mut io, read, &ctx, &clock, &mut stop).await else {
            return;
        };
        match ended {
            Ok(http1::Ended::HandOff { read: rest, to }) => {
                io.put_back(rest);
                let http1::Hyper::OneRequest(length) = to else {
                    return serve_with_hyper(io, ctx, clock, builder, stop).await;
                };
                match serve_one_with_hyper(io, length, &ctx, &clock, &mut stop).await {
                    Some((back, rest)) => (io, read) = (back, rest),
                    None => return,
                }
                io.read_by_http1();
            }
            Ok(http1::Ended::Closed) => return,
            Err(e) => return tracing::debug!("connection ended with an error: {e}"),
        }
    }
}

/// `http1` serves the connection, starting with `read`, until it ends (`None`: ended by
/// shutdown or a clock) or a request needs hyper.
async fn serve_plain(
    io: &mut ClockedIo,
    read: Bytes,
    ctx: &Arc<ConnContext>,
    clock: &Arc<ConnClock>,
    stop: &mut watch::Receiver<bool>,
) -> Option<io::Result<http1::Ended>> {
    let state = http1::State::default();
    let conn = &**ctx;
    let served = http1::serve(io, &state, read, move |req| respond(conn, clock, req));
    tokio::pin!(served);
    let control = Gated::new(control(stop, clock, &ctx.shared));
    tokio::select! {
        biased;
        ended = served.as_mut() => Some(ended),
        control = control => match control {
            Control::Expired(Expired::Headers) => {
                slow_headers();
                None
            }
            Control::Stop | Control::Expired(Expired::Idle) if !state.is_busy() => None,
            // Shutdown: the request in progress finishes (`shutdown_timeout` bounds it).
            Control::Stop => {
                state.close_after_this();
                Some(served.await)
            }
            // Idle while busy: its response is done but still being written to a
            // client that stopped reading. One more idle period, then it is cut.
            Control::Expired(Expired::Idle) => {
                state.close_after_this();
                let idle = ctx.shared.load().config.server.idle_timeout;
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
async fn serve_one_with_hyper(
    mut io: ClockedIo,
    length: http1::MessageLength,
    ctx: &Arc<ConnContext>,
    clock: &Arc<ConnClock>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(ClockedIo, Bytes)> {
    io.limit_to(length);
    let exchange = Arc::new(OneExchange::default());
    let service = {
        let (ctx, clock, exchange) = (Arc::clone(ctx), Arc::clone(clock), Arc::clone(&exchange));
        service_fn(move |req: Request<Incoming>| {
            let (ctx, clock, exchange) =
                (Arc::clone(&ctx), Arc::clone(&clock), Arc::clone(&exchange));
            // Boxed: hyper polls it from `poll_without_shutdown`, which needs it Unpin.
            Box::pin(async move { Ok::<_, Infallible>(exchange.serve(req, &ctx, &clock).await) })
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(MAX_REQUEST_HEAD);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let control = Gated::new(control(stop, clock, &ctx.shared));
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
            Poll::Ready(Control::Expired(Expired::Headers)) => return Poll::Ready(None),
            Poll::Ready(Control::Stop | Control::Expired(Expired::Idle)) => stopping = true,
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
    async fn serve(
        &self,
        req: Request<Incoming>,
        ctx: &ConnContext,
        clock: &Arc<ConnClock>,
    ) -> Response<ResponseBody> {
        if self.called.swap(true, Ordering::Relaxed) {
            // hyper reads no byte past the first request; were it ever to find a second,
            // it would not be trusted.
            clock.mark_framing_conflict();
            let req = req.map(|body| ClientBody::hyper(body, None));
            return respond_mapped(ctx, clock, req).await;
        }
        let asked_close = wants_close(req.headers());
        let end = Some(Arc::clone(&self.body_end));
        let req = req.map(|body| ClientBody::hyper(body, end));
        let res = respond_mapped(ctx, clock, req).await;
        let keep = !asked_close && !wants_close(res.headers());
        self.keep.store(keep, Ordering::Relaxed);
        res
    }
}

fn wants_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| http1::request::has_close(v.as_bytes()))
}

/// The rest of a connection whose requests `http1` does not serve itself.
async fn serve_with_hyper(
    io: ClockedIo,
    ctx: Arc<ConnContext>,
    clock: Arc<ConnClock>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::clone(&ctx.shared);
    let request_clock = Arc::clone(&clock);
    let service = service_fn(move |req: Request<Incoming>| {
        let ctx = Arc::clone(&ctx);
        let clock = Arc::clone(&request_clock);
        async move {
            let req = req.map(|body| ClientBody::hyper(body, None));
            Ok::<_, Infallible>(respond_mapped(&ctx, &clock, req).await)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let control = Gated::new(control(&mut stop, &clock, &shared));
    let result = tokio::select! {
        biased;
        r = conn.as_mut() => r,
        control = control => match control {
            Control::Stop | Control::Expired(Expired::Idle) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            Control::Expired(Expired::Headers) => return slow_headers(),
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// `respond` for hyper, which writes headers from the map only.
async fn respond_mapped(
    conn: &ConnContext,
    clock: &Arc<ConnClock>,
    req: Request<ClientBody>,
) -> Response<ResponseBody> {
    let mut res = respond(conn, clock, req).await;
    if let Some(raw) = res.body_mut().take_raw_headers() {
        raw.into_map(res.headers_mut());
    }
    res
}

/// One request, whichever server read it: the snapshot loaded once, the handler, and
/// what will report the request when its response is done. Counted as in progress (for
/// the idle clock) until then. (One async fn rather than several: each layer moved the
/// request in and the response out once more.)
async fn respond(
    conn: &ConnContext,
    clock: &Arc<ConnClock>,
    req: Request<ClientBody>,
) -> Response<ResponseBody> {
    let framing_conflict = clock.take_framing_conflict();
    let guard = clock.begin_request();
    let started = Instant::now();
    let snap = conn.shared.load();
    let facts = RequestFacts::capture(&req, conn.peer.ip, &snap);
    let (res, served) = match framing_conflict {
        true => (
            RequestError::AmbiguousFraming.into_response(),
            Served::by(RouteKind::Endpoint),
        ),
        false => {
            let ctx = handler::Ctx {
                peer: &conn.peer,
                shared: &conn.shared,
                worker: &conn.worker,
                snap: &snap,
                permit: &conn.permit,
            };
            let (result, served) = handler::handle(req, &ctx).await;
            (result.unwrap_or_else(RequestError::into_response), served)
        }
    };
    let completion = Completion {
        started,
        status: res.status().as_u16(),
        served,
        shard: Arc::clone(&conn.worker.metrics),
        facts: facts.map(|f| Box::new((f, Arc::clone(&conn.shared)))),
        snap,
    };
    res.map(|body| ResponseBody::new(body, guard, completion))
}

/// Resolves when the connection is asked to end: shutdown, or one of its clocks ran out.
async fn control(stop: &mut watch::Receiver<bool>, clock: &ConnClock, shared: &Shared) -> Control {
    tokio::select! {
        _ = stopped(stop) => Control::Stop,
        expired = watchdog(clock, shared) => Control::Expired(expired),
    }
}

/// Why a connection is asked to end other than by its client.
enum Control {
    Stop,
    Expired(Expired),
}

/// Resolves when one of the connection's clocks runs out (timeouts from the snapshot in
/// force, so a reload applies to open connections too).
async fn watchdog(clock: &ConnClock, shared: &Shared) -> Expired {
    loop {
        let (header, idle) = {
            let server = &shared.load().config.server;
            (server.header_read_timeout, server.idle_timeout)
        };
        tokio::time::sleep(timeouts::tick(header, idle)).await;
        if let Some(expired) = clock.expired(header, idle) {
            return expired;
        }
    }
}

/// Resolves once shutdown has begun (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
