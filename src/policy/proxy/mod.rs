//! Reverse proxying: one request in, rewritten for the upstream, streamed both ways.
//!
//! Neither body is buffered: the client's body is written upstream as it arrives
//! (`exchange`) and the upstream's is decoded as hyper asks for it (`response_body`). The
//! request's headers are not rewritten in a map: the head is written once, with hop-by-hop
//! headers left out and the forwarded ones added (`headers`, `wire`).

mod send;

use std::borrow::Cow;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::config::Upstream;
use crate::http::body::Body;
use crate::http::client_body::ClientBody;
use crate::http::hop_by_hop;
use crate::http::upstream::exchange::Outgoing;
use crate::http::upstream::failure::UpstreamFailure;
use crate::http::upstream::pool::UpstreamClient;
use crate::http::upstream::request_body::RequestBody;
use crate::http::upstream::response_body::{PoolReturn, UpstreamBody};
use crate::http::upstream::tunnel;
use crate::http::upstream::wire::{self, Framing};
use crate::policy::context::{ConnPermit, Peer};
use crate::policy::errors::RequestError;
use crate::policy::forwarding;
use crate::state::snapshot::Snapshot;
use crate::sys::deadlines::Deadlines;

/// What forwarding one request needs besides the request.
pub struct ForwardContext<'a> {
    pub peer: &'a Peer,
    pub snap: &'a Snapshot,
    /// This worker's pool of upstream connections.
    pub client: Arc<UpstreamClient>,
    /// The client connection's slot under `max_connections`; an upgrade takes it along.
    pub permit: &'a ConnPermit,
    /// This worker's board of `response_timeout` deadlines.
    pub deadlines: &'a Deadlines,
}

/// Forwards `req` to `upstream`, removing `strip` (a route's path prefix) from the path.
pub async fn forward(
    mut req: Request<ClientBody>,
    upstream: &Upstream,
    strip: Option<&str>,
    via: ForwardContext<'_>,
) -> Result<Response<Body>, RequestError> {
    let via = &via;
    let cfg = &via.snap.config;
    let declared = declared_length(&req);
    if declared.is_some_and(|len| len > cfg.server.max_request_body) {
        return Err(RequestError::BodyTooLarge);
    }
    if let Some(len) = declared {
        // `005` is 5 to hyper but may be something else to the app: the length goes on
        // as digits only one reading can give.
        let mut digits = itoa::Buffer::new();
        let canonical = digits.format(len).as_bytes();
        if req
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.as_bytes())
            != Some(canonical)
        {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    if req.version() == http::Version::HTTP_2 {
        forwarding::join_cookies(req.headers_mut());
    }
    let protocol = tunnel::requested(req.headers());
    let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
    ensure_host(&mut req, upstream);
    let (mut parts, mut body) = req.into_parts();
    hop_by_hop::strip_connection_listed(&mut parts.headers);
    let target = upstream_target(&parts.uri, strip)?;
    let trusted = &cfg.server.trusted_proxies;
    let fwd = forwarding::forwarding(&parts.headers, via.peer.ip, &via.peer.header_value, trusted);
    let has_body = !hyper::body::Body::is_end_stream(&body);
    let chunked = has_body && !parts.headers.contains_key(header::CONTENT_LENGTH);
    let upgrade_headers = protocol.map(tunnel::request_headers);
    let upgrade_headers = upgrade_headers.iter().flatten().map(|(n, v)| (n, v));
    let mut head = wire::encode_request(
        &parts.method,
        &target,
        fwd.apply(&parts.headers).chain(upgrade_headers),
        chunked,
    );
    // A body read with its head (within `max_request_body`: its length was checked) goes
    // out in the same write as the head.
    let streamed = match body.take_full() {
        Some(data) => {
            head.extend_from_slice(&data);
            None
        }
        None => has_body.then(|| RequestBody::streaming(body, cfg.server.max_request_body)),
    };
    let mut out = Outgoing {
        head,
        body: streamed,
        chunked,
        head_request: parts.method == Method::HEAD,
        // Relayed as lines, except for an upgrade, whose 101 headers are rewritten.
        raw_headers: client_upgrade.is_none(),
    };
    let replayable = !has_body && is_idempotent(&parts.method);
    let what = || format!("{} {}", parts.method, parts.uri.path());
    let send::Sent { conn, head, upload } =
        send::send(&mut out, replayable, upstream, via, what).await?;
    if head.framing == Framing::Upgrade {
        let protocol = head.headers.get(header::UPGRADE).cloned();
        let (Some(client), Some(protocol)) = (client_upgrade, protocol) else {
            let cause = "101 Switching Protocols without an upgrade to switch to";
            return Err(send::unreachable(
                upstream,
                cause.into(),
                UpstreamFailure::BadResponse,
            ));
        };
        let permit = via.permit.take();
        tunnel::tunnel(client, conn, upstream.name.clone(), permit);
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *res.headers_mut() = head.headers;
        tunnel::restore_headers(res.headers_mut(), protocol);
        return Ok(res);
    }
    let mut res = Response::new(Body::empty());
    *res.status_mut() = head.status;
    // Hop-by-hop headers were left out when the head was parsed (`wire`); the kept ones
    // come as a map or as relayed lines.
    *res.headers_mut() = head.headers;
    // A body still being sent when the answer came leaves the connection mid-request.
    let home = (head.reusable && upload.is_none()).then(|| PoolReturn {
        client: Arc::clone(&via.client),
        authority: upstream.authority.clone(),
    });
    let body = Body::upstream(UpstreamBody::start(conn, head.framing, home, upload));
    *res.body_mut() = match head.raw {
        Some(raw) => body.with_raw_headers(raw),
        None => body,
    };
    Ok(res)
}

/// HTTP/2 clients carry the host in the URI; an HTTP/1.0 client may send none at all, and
/// then the app sees its own address, as from any HTTP/1.1 client library.
fn ensure_host(req: &mut Request<ClientBody>, upstream: &Upstream) {
    if !req.headers().contains_key(header::HOST) {
        let host = req.uri().authority().unwrap_or(&upstream.authority);
        if let Ok(host) = HeaderValue::from_str(host.as_str()) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The request target sent upstream: the path and query, minus a route's `strip` prefix.
fn upstream_target<'u>(uri: &'u Uri, strip: Option<&str>) -> Result<Cow<'u, str>, RequestError> {
    let original = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = match strip {
        Some(prefix) if !prefix.is_empty() => {
            let rest = original.strip_prefix(prefix).unwrap_or(original);
            match rest.starts_with('/') {
                true => Cow::Borrowed(rest),
                false => Cow::Owned(format!("/{rest}")),
            }
        }
        _ if original.starts_with('/') || original == "*" => Cow::Borrowed(original),
        _ => Cow::Borrowed("/"),
    };
    // Whatever the client sent, the target must stay one token on the request line.
    match target.bytes().all(|b| b > b' ' && b != 0x7f) {
        true => Ok(target),
        false => Err(RequestError::BadPath),
    }
}
