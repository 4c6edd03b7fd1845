//! Listeners, the accept loop, the connection limit and graceful shutdown.
//!
//! Each connection holds one permit of a semaphore sized `max_connections`: accepting
//! waits for a permit when the host is full (the kernel backlog absorbs the burst), and
//! shutdown knows every connection has finished when it can take all the permits back.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::handler;
use crate::proxy::Peer;
use crate::snapshot::Shared;

const BACKLOG: u32 = 4096;

/// Binds every address before anything is served, so a port conflict fails startup.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, (SocketAddr, io::Error)> {
    addrs
        .iter()
        .map(|addr| bind_one(*addr).map_err(|e| (*addr, e)))
        .collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The running server: accept loops plus the means to stop them.
pub struct Server {
    stop: watch::Sender<bool>,
    accept_loops: JoinSet<()>,
    permits: Arc<Semaphore>,
    max_connections: u32,
}

/// What every connection of one listener shares.
struct ConnContext {
    shared: Arc<Shared>,
    peer: Peer,
}

impl Server {
    pub fn start(listeners: Vec<TcpListener>, shared: Arc<Shared>, max_connections: usize) -> Self {
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS) as u32;
        let permits = Arc::new(Semaphore::new(max_connections as usize));
        let (stop, _) = watch::channel(false);
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let mut accept_loops = JoinSet::new();
        for listener in listeners {
            accept_loops.spawn(accept_loop(
                listener,
                Arc::clone(&shared),
                Arc::clone(&builder),
                Arc::clone(&permits),
                stop.subscribe(),
            ));
        }
        Server {
            stop,
            accept_loops,
            permits,
            max_connections,
        }
    }

    /// Stops accepting, asks every connection to finish its in-flight request and close,
    /// and waits up to `timeout` for them. Returns how many were still open.
    pub async fn shutdown(mut self, timeout: Duration) -> usize {
        let _ = self.stop.send(true);
        while self.accept_loops.join_next().await.is_some() {}
        let all = self.permits.acquire_many(self.max_connections);
        match tokio::time::timeout(timeout, all).await {
            Ok(_) => 0,
            Err(_) => self.max_connections as usize - self.permits.available_permits(),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p,
            _ = stopped(&mut stop) => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
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
        let ctx = Arc::new(ConnContext {
            shared: Arc::clone(&shared),
            peer: Peer::new(peer.ip().to_canonical()),
        });
        let builder = Arc::clone(&builder);
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, ctx, &builder, stop).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<ConnContext>,
    builder: &auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, Infallible>(handler::handle(req, &ctx.peer, &ctx.shared).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// Resolves once shutdown has begun (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
