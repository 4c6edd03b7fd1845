//! The load balancer's view of this host: `health_path` (the process is alive and which
//! configuration it runs) and `ready_path` (the active upstream passed its last check;
//! see `control::prober`).

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::body::Body;
use crate::http::upstream::probe;
use crate::state::snapshot::{Shared, Snapshot};
use crate::state::upstream_health;

pub fn health(snap: &Snapshot) -> Response<Body> {
    json_response(StatusCode::OK, Body::full(snap.health_body()))
}

pub async fn ready(snap: &Snapshot, shared: &Shared) -> Response<Body> {
    let up = active_is_up(snap, shared).await;
    // While draining for shutdown the host must leave the target group even though the
    // upstream is fine.
    let (status, word) = match (shared.draining(), up) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        (false, true) => (StatusCode::OK, "ok"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    json_response(status, Body::full(snap.ready_body(word, up)))
}

/// The active upstream's last check, if it is recent; else a check right now (just after
/// startup or a switch), whose result is recorded for the next caller.
async fn active_is_up(snap: &Snapshot, shared: &Shared) -> bool {
    let active = &snap.config.active;
    let proxy = &snap.config.proxy;
    let timeout = proxy.health_timeout;
    if let Some(state) = shared.health.recent(
        active,
        proxy
            .health_interval
            .saturating_mul(2)
            .saturating_add(timeout),
    ) {
        return state.up;
    }
    let result = probe::check(active, timeout).await;
    let thresholds = upstream_health::Thresholds::of(proxy);
    shared.health.record(active, result, thresholds)
}

fn json_response(status: StatusCode, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
