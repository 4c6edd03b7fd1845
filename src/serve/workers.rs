//! Worker threads (one per core, each a current-thread runtime with its own upstream pool
//! and file cache), the connection limit and graceful shutdown: shutdown knows every
//! connection has finished when it can take all `max_connections` permits back.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::http::connection::http_builder;
use crate::policy::worker::Worker;
use crate::serve::accept::{accept_loop, receive_handoffs, WorkerCommon, WorkerCtx};
use crate::serve::balance::{Balance, Handoff};
use crate::state::snapshot::Shared;
use crate::sys::deadlines;

/// The running server: worker threads plus the means to stop them.
pub struct Workers {
    stop: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    max_connections: u32,
}

impl Workers {
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
            let common = WorkerCommon {
                shared: Arc::clone(shared),
                permits: Arc::clone(&permits),
                stop: stop.subscribe(),
                balance: Arc::clone(&balance),
            };
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || run_worker(id, own, inbox, common))?;
        }
        Ok(Workers {
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

fn run_worker(
    id: usize,
    listeners: Vec<std::net::TcpListener>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
    common: WorkerCommon,
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
