//! `Upgrade` (WebSocket and friends): the request's Upgrade headers are forwarded despite
//! being hop-by-hop, the upstream's 101 is relayed, and then both connections are handed
//! over and joined byte for byte until either side closes.
//!
//! A tunnel belongs to no snapshot: a reload or a blue/green switch does not touch it,
//! and it keeps the upstream it was opened to. It takes over its HTTP connection's permit
//! (its slot under `max_connections`), so it keeps counting as a connection and graceful
//! shutdown waits for it up to `shutdown_timeout`. There is no idle timeout on a tunnel
//! (nginx's `proxy_read_timeout` closes a quiet WebSocket after 60 s, a classic surprise);
//! the load balancer's own idle timeout and the peers' pings govern it.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use super::exchange::Conn;

/// `websocket` when the request asks for it (`Connection: upgrade` + `Upgrade` listing it).
/// Only WebSocket is tunnelled: an `h2c` upgrade arrives without the upstream being able
/// to use it (its `HTTP2-Settings` is hop-by-hop), and a tunnel of it would carry
/// requests past the forwarding-header rewrite ("h2c smuggling"). Other tokens are
/// dropped with the hop-by-hop headers, and the request goes on as plain HTTP/1.1.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = crate::http::hop_by_hop::has_element(headers, &header::CONNECTION, "upgrade");
    let websocket = crate::http::hop_by_hop::has_element(headers, &header::UPGRADE, "websocket");
    (asks && websocket).then(|| HeaderValue::from_static("websocket"))
}

/// The two hop-by-hop headers an upgrade needs on the next hop (written with the request
/// head; `restore_headers` puts them in a response).
pub fn request_headers(protocol: HeaderValue) -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CONNECTION, HeaderValue::from_static("upgrade")),
        (header::UPGRADE, protocol),
    ]
}

/// Puts back the two hop-by-hop headers an upgrade needs on the next hop.
pub fn restore_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    for (name, value) in request_headers(protocol) {
        headers.insert(name, value);
    }
}

/// After a 101 from the upstream: joins the client's connection, once hyper hands it over,
/// to the upstream's, starting with whatever the upstream sent right after its 101 head.
pub fn tunnel(
    client: OnUpgrade,
    upstream: Conn,
    upstream_name: String,
    permit: Option<OwnedSemaphorePermit>,
) {
    tokio::spawn(async move {
        let _permit = permit;
        let client = match client.await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!("upgrade to {upstream_name} failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let Conn {
            stream: mut upstream_io,
            buf: early,
            ..
        } = upstream;
        let joined = async {
            client.write_all(&early).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream_io).await
        };
        if let Err(e) = joined.await {
            tracing::debug!("upgraded connection to {upstream_name} ended: {e}");
        }
    });
}
