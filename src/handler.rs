//! The request path, one way through: load the snapshot once, route, one handler.

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::config::{Fallback, Upstream};
use crate::error::RequestError;
use crate::health;
use crate::proxy::{self, Peer};
use crate::router::{self, Decision};
use crate::snapshot::{Shared, Snapshot};
use crate::static_files::{self, Outcome};
use crate::worker::Worker;

pub async fn handle(
    req: Request<Incoming>,
    peer: &Peer,
    shared: &Shared,
    worker: &Worker,
) -> Response<Body> {
    let snap = shared.load();
    let ctx = Ctx {
        peer,
        shared,
        worker,
        snap: &snap,
    };
    dispatch(req, &ctx)
        .await
        .unwrap_or_else(RequestError::into_response)
}

/// Everything one request may need besides itself.
struct Ctx<'a> {
    peer: &'a Peer,
    shared: &'a Shared,
    worker: &'a Worker,
    snap: &'a Arc<Snapshot>,
}

impl Ctx<'_> {
    async fn proxy(
        &self,
        req: Request<Incoming>,
        upstream: &Upstream,
        strip: Option<&str>,
    ) -> Result<Response<Body>, RequestError> {
        let client = self.worker.client(&self.snap.config.proxy);
        let via = proxy::Via {
            peer: self.peer,
            snap: self.snap,
            client: &client,
            permits: &self.worker.permits,
        };
        proxy::forward(req, upstream, strip, &via).await
    }
}

async fn dispatch(req: Request<Incoming>, ctx: &Ctx<'_>) -> Result<Response<Body>, RequestError> {
    let snap = ctx.snap;
    match router::decide(&snap.config, &req) {
        Decision::Health => Ok(health::health(snap)),
        Decision::Ready => Ok(health::ready(snap, ctx.shared).await),
        Decision::RouteSlash => Ok(static_files::redirect_to_slash(
            req.uri().path(),
            req.uri().query(),
        )),
        Decision::Route(route) => {
            let strip = route
                .strip_prefix
                .then(|| route.path_prefix.as_ref().map(|p| p.base.as_str()))
                .flatten();
            ctx.proxy(req, &route.upstream, strip).await
        }
        Decision::Local => local(req, ctx).await,
    }
}

/// The web root first, then `fallback`.
async fn local(req: Request<Incoming>, ctx: &Ctx<'_>) -> Result<Response<Body>, RequestError> {
    let snap = ctx.snap;
    if let Outcome::Response(res) = static_files::serve(&req, snap, &ctx.worker.files).await? {
        return Ok(res);
    }
    let fallback = snap
        .config
        .static_files
        .as_ref()
        .map_or(Fallback::Upstream, |s| s.fallback);
    match fallback {
        Fallback::Upstream => ctx.proxy(req, &snap.config.active, None).await,
        Fallback::Index if is_page_request(&req) => {
            match static_files::serve_index(&req, snap, &ctx.worker.files).await? {
                Outcome::Response(res) => Ok(res),
                Outcome::NotHere => Err(RequestError::NotFound),
            }
        }
        Fallback::Index | Fallback::NotFound => Err(RequestError::NotFound),
    }
}

/// A single-page app answers unknown *pages* with its index, but a missing asset
/// (`/assets/app.3f2a.js`) must stay a 404, or the browser would parse HTML as script.
/// The usual rule: the last path segment has no extension.
fn is_page_request<B>(req: &Request<B>) -> bool {
    let last = req.uri().path().rsplit('/').next().unwrap_or("");
    matches!(*req.method(), Method::GET | Method::HEAD) && !last.contains('.')
}
