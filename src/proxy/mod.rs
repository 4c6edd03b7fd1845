//! Reverse proxying: one request in, rewritten for the upstream, streamed both ways.
//!
//! Neither body is buffered: the client's `Incoming` body is handed to the upstream client
//! as it arrives and the upstream's `Incoming` body is handed back to hyper. The only
//! whole-request work is header rewriting, done in place on the request's own `HeaderMap`.

mod client;
mod headers;
mod request_body;
mod send;
mod upgrade;

use std::net::IpAddr;
use std::sync::Arc;

use http::uri::{PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

pub use client::UpstreamClient;
pub use headers::{client_ip, set_forwarded, strip_hop_by_hop};

use crate::body::Body;
use crate::config::Upstream;
use crate::error::RequestError;
use crate::snapshot::Snapshot;

/// The client end of a connection, rendered once per connection.
pub struct Peer {
    pub ip: IpAddr,
    pub header_value: HeaderValue,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Self {
        let header_value = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Peer { ip, header_value }
    }
}

/// What forwarding one request needs besides the request.
pub struct Via<'a> {
    pub peer: &'a Peer,
    pub snap: &'a Snapshot,
    pub client: &'a UpstreamClient,
    /// The connection limit; an upgraded connection takes a permit of its own.
    pub permits: &'a Arc<Semaphore>,
}

/// Forwards `req` to `upstream`, removing `strip` (a route's path prefix) from the path.
pub async fn forward(
    mut req: Request<Incoming>,
    upstream: &Upstream,
    strip: Option<&str>,
    via: &Via<'_>,
) -> Result<Response<Body>, RequestError> {
    let cfg = &via.snap.config;
    if declared_length(&req).is_some_and(|len| len > cfg.server.max_request_body) {
        return Err(RequestError::BodyTooLarge);
    }
    let protocol = upgrade::requested(req.headers());
    let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
    rewrite_request(&mut req, upstream, strip, via)?;
    if let Some(protocol) = protocol {
        upgrade::restore_headers(req.headers_mut(), protocol);
    }
    let mut res = send::send(req, upstream, via).await?;
    let upgraded = client_upgrade.and_then(|client| {
        let permit = Arc::clone(via.permits).try_acquire_owned().ok();
        upgrade::tunnel(client, &mut res, upstream.name.clone(), permit)
    });
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgraded {
        upgrade::restore_headers(&mut parts.headers, protocol);
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    Ok(Response::from_parts(parts, Body::Upstream(body)))
}

/// Points the request at the upstream and rewrites its headers in place.
fn rewrite_request(
    req: &mut Request<Incoming>,
    upstream: &Upstream,
    strip: Option<&str>,
    via: &Via<'_>,
) -> Result<(), RequestError> {
    let uri = upstream_uri(req.uri(), upstream, strip)?;
    if !req.headers().contains_key(header::HOST) {
        // HTTP/2 clients carry the host in the URI; the app still expects a Host header.
        let host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(host) = host {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let trusted = &via.snap.config.server.trusted_proxies;
    set_forwarded(headers, via.peer.ip, &via.peer.header_value, trusted);
    Ok(())
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn upstream_uri(uri: &Uri, upstream: &Upstream, strip: Option<&str>) -> Result<Uri, RequestError> {
    let original = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path_and_query = match strip {
        Some(prefix) if !prefix.is_empty() => {
            let rest = original.strip_prefix(prefix).unwrap_or(original);
            let rewritten = if rest.starts_with('/') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            };
            PathAndQuery::try_from(rewritten).map_err(|_| RequestError::BadPath)?
        }
        _ => match uri.path_and_query() {
            Some(pq) => pq.clone(),
            None => PathAndQuery::from_static("/"),
        },
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(upstream.authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|e| RequestError::Internal(e.to_string()))
}
