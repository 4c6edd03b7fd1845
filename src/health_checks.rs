//! The prober: active health checks of upstreams (results go to `upstream_health`), and
//! the probe a switching reload runs.
//!
//! Every upstream with a `health` path is checked every `health_interval` with an HTTP
//! GET on a fresh connection (2xx = up); the active upstream, if it has no health path, by
//! a TCP connect. State changes are logged once, not on every probe. `ready_path` and
//! `/status` read the table; they never probe on the request path unless the table has
//! nothing recent for the active upstream (just after startup or a switch).
//!
//! The check is a `GET` with `Connection: close` on a new socket, by the proxy's own client
//! (`proxy::probe`): the pooled connections would test a warm connection instead of the
//! app's ability to accept a new one.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::{ProxySettings, Upstream};
use crate::proxy::probe;
use crate::snapshot::Shared;
use crate::upstream_health::Thresholds;

/// How long one check may take (`health_timeout`): the periodic ones, the one `ready_path`
/// runs when the table has nothing recent, and a switching reload's.
pub fn probe_timeout(proxy: &ProxySettings) -> Duration {
    proxy.health_timeout
}

/// Checks `upstream` once: its health path if it has one, else a TCP connect.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = upstream.authority.as_str();
    let Some(path) = &upstream.health else {
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
            Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
        };
    };
    let answer = probe::get(addr, addr, path.as_str(), PROBE_BODY_LIMIT, timeout).await?;
    match answer.status.is_success() {
        true => Ok(()),
        false => Err(format!(
            "GET {path} on {addr} answered {}",
            answer.status.as_u16()
        )),
    }
}

/// A health answer's body is read (so the connection ends cleanly) but not kept.
const PROBE_BODY_LIMIT: usize = 64 * 1024;

/// Checks every upstream that has a health path, plus the active one, every
/// `health_interval` of the snapshot in force, until the process ends. The checks of one
/// round run concurrently, so one black-holed upstream does not delay the others.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let snap = shared.load();
        let timeout = probe_timeout(&snap.config.proxy);
        let thresholds = Thresholds::of(&snap.config.proxy);
        let mut round = JoinSet::new();
        for upstream in &snap.config.upstreams {
            if snap.config.is_checked(upstream) {
                let upstream = Arc::clone(upstream);
                round.spawn(async move {
                    let result = check(&upstream, timeout).await;
                    (upstream, result)
                });
            }
        }
        while let Some(joined) = round.join_next().await {
            if let Ok((upstream, result)) = joined {
                shared.health.record(&upstream, result, thresholds);
            }
        }
        tokio::time::sleep(snap.config.proxy.health_interval).await;
    }
}
