//! The load balancer's view of this host: `health_path` (the process is alive and which
//! configuration it runs) and `ready_path` (the active upstream is reachable right now),
//! and the upstream probe that `ready_path` and a switching reload share.
//!
//! Until active health checks exist the probe is a TCP connect, bounded by
//! `connect_timeout` (at most 2 s, so an ALB check never waits on a black-holed port).

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use tokio::net::TcpStream;

use crate::body::Body;
use crate::config::{ProxySettings, Upstream};
use crate::snapshot::{Shared, Snapshot};

const PROBE_TIMEOUT_CAP: Duration = Duration::from_secs(2);

pub fn health(snap: &Snapshot) -> Response<Body> {
    json_response(StatusCode::OK, Body::Full(Some(snap.health_body())))
}

pub async fn ready(snap: &Snapshot, shared: &Shared) -> Response<Body> {
    let up = probe(&snap.config.active, probe_timeout(&snap.config.proxy))
        .await
        .is_ok();
    // While draining for shutdown the host must leave the target group even though the
    // upstream is fine.
    let (status, word) = match (shared.draining(), up) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        (false, true) => (StatusCode::OK, "ok"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    json_response(status, Body::full(snap.ready_body(word, up)))
}

/// Whether `upstream` accepts a TCP connection within `timeout`.
pub async fn probe(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = upstream.authority.as_str();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
        Err(_) => Err(format!("connect to {addr} timed out after {timeout:?}")),
    }
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

/// A probe waits no longer than a connection attempt would, and never long enough to make
/// a load balancer's health check time out.
pub fn probe_timeout(proxy: &ProxySettings) -> Duration {
    proxy.connect_timeout.min(PROBE_TIMEOUT_CAP)
}
