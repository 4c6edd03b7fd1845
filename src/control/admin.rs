//! The admin listener (`server.admin_listen`, loopback by default): `/status` as JSON for
//! operators and for `switchyard switch`, `/metrics` for Prometheus. Served by the control runtime, never by the
//! public listeners, so no route or web-root file can shadow it and the load balancer
//! never reaches it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::control::prometheus;
use crate::http::body::Body;
use crate::state::canary::Progress;
use crate::state::snapshot::{ReloadOutcome, Shared};

/// Accepts admin connections until the process ends.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    match req.uri().path() {
        "/status" => json(StatusCode::OK, status(shared)),
        "/metrics" => {
            let mut res = Response::new(Body::full(prometheus::render(shared)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found", "endpoints": ["/status", "/metrics"]}),
        ),
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Version, uptime, generation, active, every upstream with its health, last reload.
pub fn status(shared: &Shared) -> serde_json::Value {
    let snap = shared.load();
    let c = &snap.config;
    let upstreams: Vec<serde_json::Value> = c
        .upstreams
        .iter()
        .map(|u| {
            let state = c.is_checked(u).then(|| shared.health.get(u)).flatten();
            serde_json::json!({
                "name": u.name,
                "url": u.url,
                "health_path": u.health.as_ref().map(|h| h.as_str()),
                "active": u.name == c.active.name,
                "health": state.as_ref().map_or("unchecked", |s| if s.up { "up" } else { "down" }),
                "since_unix": state.as_ref().map(|s| unix(s.since)),
                "error": state.and_then(|s| s.error),
            })
        })
        .collect();
    let last_reload = shared.last_reload().map(|r| {
        serde_json::json!({
            "ok": r.outcome == ReloadOutcome::Ok,
            "result": r.outcome.as_str(),
            "at_unix": unix(r.at),
            "message": r.message,
        })
    });
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": shared.started.elapsed().map_or(0, |d| d.as_secs()),
        "generation": snap.generation,
        "active": c.active.name,
        "config": c.digest,
        "config_file": c.file.display().to_string(),
        "draining": shared.draining(),
        "upstreams": upstreams,
        "last_reload": last_reload,
        "canary": shared.canary.progress().map(|p| canary_json(&p)),
        "previous": snap.previous.as_ref().filter(|p| Instant::now() < p.until).map(|p| serde_json::json!({
            "upstream": p.upstream.name,
            "seconds_left": p.until.saturating_duration_since(Instant::now()).as_secs_f64(),
            // Kept only while its health checks pass: down, its cookie holders move now.
            "up": !shared.health.is_down(&p.upstream),
        })),
    })
}

fn canary_json(p: &Progress) -> serde_json::Value {
    serde_json::json!({
        "upstream": p.upstream,
        "weight": p.weight,
        "step": p.step,
        "steps": p.steps,
        "state": p.phase.as_str(),
        "reason": p.reason,
        "since_unix": unix(p.since),
        "interval": {
            "requests": p.window.requests,
            "errors": p.window.errors,
            "error_ratio": p.window.error_ratio(),
            "p99_seconds": p.window.quantile(0.99).map(|d| d.as_secs_f64()),
        },
    })
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut res = Response::new(Body::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
