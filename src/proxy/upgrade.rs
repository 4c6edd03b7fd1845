//! `Upgrade` (WebSocket and friends): the request's Upgrade headers are forwarded despite
//! being hop-by-hop, the upstream's 101 is relayed, and then both connections are handed
//! over by hyper and joined byte for byte until either side closes.
//!
//! A tunnel belongs to no snapshot: a reload or a blue/green switch does not touch it,
//! and it keeps the upstream it was opened to. It holds a connection permit, so graceful
//! shutdown waits for it up to `shutdown_timeout`. There is no idle timeout on a tunnel
//! (nginx's `proxy_read_timeout` closes a quiet WebSocket after 60 s, a classic surprise);
//! the load balancer's own idle timeout and the peers' pings govern it.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::OwnedSemaphorePermit;

/// The `Upgrade` value of a request that asks for one (`Connection: upgrade` + `Upgrade`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts back the two hop-by-hop headers an upgrade needs on the next hop.
pub fn restore_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// For a 101 from the upstream: keep its Upgrade header for the client and join the two
/// connections once hyper has handed them over.
pub fn tunnel(
    client: OnUpgrade,
    upstream: &mut Response<Incoming>,
    upstream_name: String,
    permit: Option<OwnedSemaphorePermit>,
) -> Option<HeaderValue> {
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let protocol = upstream.headers().get(header::UPGRADE).cloned()?;
    let upstream_io = hyper::upgrade::on(upstream);
    tokio::spawn(async move {
        let _permit = permit;
        let (client, upstream_io) = match tokio::try_join!(client, upstream_io) {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!("upgrade to {upstream_name} failed: {e}");
                return;
            }
        };
        let (mut client, mut upstream_io) = (TokioIo::new(client), TokioIo::new(upstream_io));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream_io).await {
            tracing::debug!("upgraded connection to {upstream_name} ended: {e}");
        }
    });
    Some(protocol)
}
