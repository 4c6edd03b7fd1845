//! The request path, one way through: the snapshot (loaded once by the caller), route, one
//! handler; the answer comes back with how it was served, for metrics and the access log.

use std::future::Future;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response};

use crate::config::{Fallback, RouteUpstream, Upstream};
use crate::http::body::Body;
use crate::http::client_body::ClientBody;
use crate::http::upstream::failure::UpstreamFailure;
use crate::policy::colour::{self, Colour};
use crate::policy::context::{ConnPermit, Peer};
use crate::policy::endpoints;
use crate::policy::errors::RequestError;
use crate::policy::proxy;
use crate::policy::request_checks;
use crate::policy::routing::{self, Decision};
use crate::policy::static_files::{self, Outcome};
use crate::policy::worker::Worker;
use crate::state::metrics::RouteKind;
use crate::state::snapshot::{Shared, Snapshot};

/// Everything one request may need besides itself.
pub struct DispatchContext<'a> {
    pub peer: &'a Peer,
    pub shared: &'a Shared,
    pub worker: &'a Worker,
    pub snap: &'a Arc<Snapshot>,
    pub permit: &'a ConnPermit,
}

/// How the dispatcher answered a request.
pub struct Served {
    pub kind: RouteKind,
    /// Index into the snapshot's `upstreams`.
    pub upstream: Option<usize>,
    /// What went wrong on the upstream's side, if anything did.
    pub failure: Option<UpstreamFailure>,
}

impl Served {
    pub fn by(kind: RouteKind) -> Self {
        Served {
            kind,
            upstream: None,
            failure: None,
        }
    }

    pub fn proxied(kind: RouteKind, upstream: &Upstream) -> Self {
        Served {
            kind,
            upstream: Some(upstream.index),
            failure: None,
        }
    }

    /// Counted only for a request that went to an upstream.
    pub fn failed(mut self, failure: Option<UpstreamFailure>) -> Self {
        if self.upstream.is_some() {
            self.failure = failure;
        }
        self
    }
}

/// The response (or the error to answer with) and how the request was served.
pub struct Answer {
    pub response: Result<Response<Body>, RequestError>,
    pub served: Served,
}

impl Answer {
    fn new(response: Result<Response<Body>, RequestError>, served: Served) -> Self {
        Answer { response, served }
    }
}

impl<'a> DispatchContext<'a> {
    /// Where a request `active` would get goes (`colour`).
    fn colour<B>(&self, req: &Request<B>) -> Colour<'a> {
        colour::choose(req.headers(), self.peer.ip, self.snap, self.shared)
    }

    /// Not an async fn: the caller awaits the proxy future itself, so the request and the
    /// response are not moved through another future's state.
    fn proxy(
        &self,
        req: Request<ClientBody>,
        upstream: &'a Upstream,
        strip: Option<&'a str>,
    ) -> impl Future<Output = Result<Response<Body>, RequestError>> + Send + 'a {
        let via = proxy::ForwardContext {
            peer: self.peer,
            snap: self.snap,
            client: self.worker.client(&self.snap.config.proxy),
            permit: self.permit,
            deadlines: &self.worker.deadlines,
        };
        proxy::forward(req, upstream, strip, via)
    }
}

pub async fn handle<'a>(mut req: Request<ClientBody>, ctx: &DispatchContext<'a>) -> Answer {
    let snap = ctx.snap;
    if let Err(refused) = request_checks::check(&mut req) {
        return Answer::new(Err(refused), Served::by(RouteKind::Endpoint));
    }
    match routing::decide(&snap.config, &req) {
        Decision::Health => {
            Answer::new(Ok(endpoints::health(snap)), Served::by(RouteKind::Endpoint))
        }
        Decision::Ready => Answer::new(
            Ok(endpoints::ready(snap, ctx.shared).await),
            Served::by(RouteKind::Endpoint),
        ),
        Decision::RouteSlash => {
            let mut res = static_files::redirect_to_slash(req.uri().path(), req.uri().query());
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                // RFC 9110 15.4.9: a 301 lets clients retry a POST as GET; 308 keeps it.
                *res.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
                *res.body_mut() = Body::full("308 permanent redirect\n");
            }
            Answer::new(Ok(res), Served::by(RouteKind::Route))
        }
        Decision::Route(route) => {
            let strip = route
                .strip_prefix
                .then(|| route.path_prefix.as_ref().map(|p| p.base.as_str()))
                .flatten();
            let colour = match &route.upstream {
                RouteUpstream::Active => ctx.colour(&req),
                RouteUpstream::Named(upstream) => Colour::named(upstream),
            };
            let served = Served::proxied(RouteKind::Route, colour.upstream);
            let mut response = ctx.proxy(req, colour.upstream, strip).await;
            keep_colour(&mut response, colour.set_cookie);
            Answer::new(response, served)
        }
        Decision::Local => {
            // The web root first, then `fallback` (inline, so the request is not moved into
            // another future's state).
            match static_files::serve(&req, snap, &ctx.worker.files).await {
                Ok(Outcome::Response(res)) => {
                    return Answer::new(Ok(res), Served::by(RouteKind::Static))
                }
                Err(e) => return Answer::new(Err(e), Served::by(RouteKind::Static)),
                Ok(Outcome::NotHere) => {}
            }
            let fallback = snap
                .config
                .static_files
                .as_ref()
                .map_or(Fallback::Upstream, |s| s.fallback);
            let result = match fallback {
                Fallback::Upstream => {
                    let colour = ctx.colour(&req);
                    let served = Served::proxied(RouteKind::Fallback, colour.upstream);
                    let mut response = ctx.proxy(req, colour.upstream, None).await;
                    keep_colour(&mut response, colour.set_cookie);
                    return Answer::new(response, served);
                }
                Fallback::Index if is_page_request(&req) => {
                    match static_files::serve_index(&req, snap, &ctx.worker.files).await {
                        Ok(Outcome::Response(res)) => Ok(res),
                        Ok(Outcome::NotHere) => Err(RequestError::NotFound),
                        Err(e) => Err(e),
                    }
                }
                Fallback::Index | Fallback::NotFound => Err(RequestError::NotFound),
            };
            Answer::new(result, Served::by(RouteKind::Fallback))
        }
    }
}

/// Keeps the client on its colour: the cookie goes on any answer the upstream gave (in
/// place: the response is not moved for the common case of no cookie).
fn keep_colour(response: &mut Result<Response<Body>, RequestError>, cookie: Option<HeaderValue>) {
    if let (Ok(res), Some(cookie)) = (response, cookie) {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

/// A single-page app answers unknown *pages* with its index, but a missing asset
/// (`/assets/app.3f2a.js`) must stay a 404, or the browser would parse HTML as script.
/// The usual rule: the last path segment has no extension.
fn is_page_request<B>(req: &Request<B>) -> bool {
    let last = req.uri().path().rsplit('/').next().unwrap_or("");
    matches!(*req.method(), Method::GET | Method::HEAD) && !last.contains('.')
}

#[cfg(test)]
mod tests;
