//! The request path, one way through: load the snapshot once, route, one handler.

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::Fallback;
use crate::error::RequestError;
use crate::health;
use crate::proxy::{self, Peer};
use crate::router::{self, Decision};
use crate::snapshot::{Shared, Snapshot};
use crate::static_files::{self, Outcome};

pub async fn handle(req: Request<Incoming>, peer: &Peer, shared: &Shared) -> Response<Body> {
    let snap = shared.load();
    dispatch(req, peer, shared, &snap)
        .await
        .unwrap_or_else(RequestError::into_response)
}

async fn dispatch(
    req: Request<Incoming>,
    peer: &Peer,
    shared: &Shared,
    snap: &Arc<Snapshot>,
) -> Result<Response<Body>, RequestError> {
    match router::decide(&snap.config, &req) {
        Decision::Health => Ok(health::health(snap)),
        Decision::Ready => Ok(health::ready(snap, shared).await),
        Decision::RouteSlash => Ok(static_files::redirect_to_slash(
            req.uri().path(),
            req.uri().query(),
        )),
        Decision::Route(route) => {
            let strip = route
                .strip_prefix
                .then(|| route.path_prefix.as_ref().map(|p| p.base.as_str()))
                .flatten();
            proxy::forward(req, &route.upstream, strip, peer, snap).await
        }
        Decision::Local => local(req, peer, snap).await,
    }
}

/// The web root first, then `fallback`.
async fn local(
    req: Request<Incoming>,
    peer: &Peer,
    snap: &Arc<Snapshot>,
) -> Result<Response<Body>, RequestError> {
    if let Outcome::Response(res) = static_files::serve(&req, snap).await? {
        return Ok(res);
    }
    let fallback = snap
        .config
        .static_files
        .as_ref()
        .map_or(Fallback::Upstream, |s| s.fallback);
    match fallback {
        Fallback::Upstream => proxy::forward(req, &snap.config.active, None, peer, snap).await,
        Fallback::Index if matches!(*req.method(), Method::GET | Method::HEAD) => {
            match static_files::serve_index(&req, snap).await? {
                Outcome::Response(res) => Ok(res),
                Outcome::NotHere => Err(RequestError::NotFound),
            }
        }
        Fallback::Index | Fallback::NotFound => Err(RequestError::NotFound),
    }
}
