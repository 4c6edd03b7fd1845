//! Accepting connections: each worker accepts on its own duplicate of every listener, so
//! whichever worker is idle takes the next connection, and hands it to another worker if
//! it is already ahead (`balance`). Each connection holds one permit of a semaphore sized
//! `max_connections`: accepting waits for a permit when the host is full (the kernel
//! backlog absorbs the burst).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::http::connection::{self, stopped};
use crate::policy::context::{ConnPermit, Peer};
use crate::policy::worker::Worker;
use crate::serve::balance::{Accepted, Balance, Handoff};
use crate::serve::respond::ConnContext;
use crate::state::snapshot::Shared;

/// What every worker shares.
pub(super) struct WorkerCommon {
    pub(super) shared: Arc<Shared>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) balance: Arc<Balance>,
}

/// One worker as its accept loops and connections see it.
pub(super) struct WorkerCtx {
    pub(super) id: usize,
    pub(super) common: WorkerCommon,
    pub(super) worker: Arc<Worker>,
    pub(super) builder: auto::Builder<TokioExecutor>,
}

pub(super) async fn accept_loop(listener: TcpListener, ctx: Arc<WorkerCtx>) {
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
pub(super) async fn receive_handoffs(
    mut inbox: mpsc::UnboundedReceiver<Handoff>,
    ctx: Arc<WorkerCtx>,
) {
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
