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
//! (`upstream::probe`): the pooled connections would test a warm connection instead of the
//! app's ability to accept a new one.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::http::upstream::probe;
use crate::state::snapshot::Shared;
use crate::state::upstream_health::Thresholds;

/// Checks every upstream that has a health path, plus the active one, every
/// `health_interval` of the snapshot in force, until the process ends. The checks of one
/// round run concurrently, so one black-holed upstream does not delay the others.
pub async fn run(shared: Arc<Shared>) {
    loop {
        let snap = shared.load();
        let timeout = snap.config.proxy.health_timeout;
        let thresholds = Thresholds::of(&snap.config.proxy);
        let mut round = JoinSet::new();
        for upstream in &snap.config.upstreams {
            if snap.config.is_checked(upstream) {
                let upstream = Arc::clone(upstream);
                round.spawn(async move {
                    let result = probe::check(&upstream, timeout).await;
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
