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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::balance::{Accepted, Balance, Handoff};
use crate::body::{ClientBody, ResponseBody};
use crate::connection::{self, http_builder, stopped, Respond};
use crate::deadlines;
use crate::error::RequestError;
use crate::handler;
use crate::metrics::RouteKind;
use crate::observe::{Completion, RequestFacts, Served};
use crate::proxy::{ConnPermit, Peer};
use crate::snapshot::Shared;
use crate::timeouts::ConnClock;
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
        take_over(&mut connections, &ctx, h);
    }
    // A connection handed over as shutdown began was accepted all the same: it is served
    // (with the grace every connection gets for its first request), never dropped unseen.
    // Once the inbox is closed a worker that tries to hand one over keeps it.
    inbox.close();
    // recv, not try_recv: a hand-over that passed the closed check before close() but is
    // not in the queue yet makes try_recv answer Empty; recv waits for it.
    while let Some(h) = inbox.recv().await {
        take_over(&mut connections, &ctx, h);
    }
    while connections.join_next().await.is_some() {}
}

fn take_over(connections: &mut JoinSet<()>, ctx: &Arc<WorkerCtx>, h: Handoff) {
    match h.convert(TcpStream::from_std) {
        Ok(conn) => spawn_connection(connections, ctx, conn),
        Err(e) => tracing::debug!("cannot take over a connection: {e}"),
    }
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
        let _ = stream.set_nodelay(true);
        connection::serve(stream, conn, &ctx.builder, ctx.common.stop.clone()).await;
        metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
    });
}

impl Respond for ConnContext {
    fn respond(
        &self,
        clock: &Arc<ConnClock>,
        req: Request<ClientBody>,
        ambiguous: bool,
    ) -> impl std::future::Future<Output = Response<ResponseBody>> + Send {
        respond(self, clock, req, ambiguous)
    }

    fn timeouts(&self) -> (Duration, Duration) {
        let server = &self.shared.load().config.server;
        (server.header_read_timeout, server.idle_timeout)
    }
}

/// One request, whichever server read it: the snapshot loaded once, the handler, and
/// what will report the request when its response is done. Counted as in progress (for
/// the idle clock) until then.
async fn respond(
    conn: &ConnContext,
    clock: &Arc<ConnClock>,
    req: Request<ClientBody>,
    ambiguous: bool,
) -> Response<ResponseBody> {
    let guard = clock.begin_request();
    let started = Instant::now();
    let snap = conn.shared.load();
    let facts = RequestFacts::capture(&req, conn.peer.ip, &snap);
    let (res, served) = match ambiguous {
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
            let failure = result
                .as_ref()
                .err()
                .and_then(RequestError::upstream_failure);
            let served = served.failed(failure);
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
