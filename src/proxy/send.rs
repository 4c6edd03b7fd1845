//! One proxied request on the wire: the upstream client call with `response_timeout`,
//! the mapping of its failures (502, 504, 413), and the single safe retry.

use std::error::Error as StdError;

use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::request_body::{chain, BodyTooLarge, ClientBodyError, RequestBody};
use super::Via;
use crate::config::Upstream;
use crate::error::RequestError;

/// Sends on a pooled connection. No response headers within `response_timeout` is a
/// 504. A bodiless idempotent request that fails because its connection was already
/// closed by the upstream (the race between reuse and the app's keep-alive timeout, or an
/// app restart) is sent once more on a fresh connection; nothing else is ever replayed.
pub async fn send(
    req: Request<Incoming>,
    upstream: &Upstream,
    via: &Via<'_>,
) -> Result<Response<Incoming>, RequestError> {
    let limit = via.snap.config.server.max_request_body;
    let (parts, body) = req.into_parts();
    let replay = (is_idempotent(&parts.method) && body.is_end_stream()).then(|| replayable(&parts));
    let req = Request::from_parts(parts, RequestBody::streaming(body, limit));
    match attempt(req, &via.client.http, via).await {
        Err(AttemptError::Stale(cause)) => match replay {
            Some(again) => {
                tracing::info!(
                    "retrying {} {} on a fresh connection to {}: {cause}",
                    again.method(),
                    again.uri().path(),
                    upstream.name
                );
                attempt(again, &via.client.fresh, via)
                    .await
                    .map_err(|e| e.into_request_error(upstream))
            }
            None => Err(AttemptError::Stale(cause).into_request_error(upstream)),
        },
        other => other.map_err(|e| e.into_request_error(upstream)),
    }
}

enum AttemptError {
    Timeout(std::time::Duration),
    /// The connection closed or reset before a response: worth one retry when safe.
    Stale(String),
    TooLarge,
    /// The client's own body was broken.
    Client(String),
    Other(String),
}

impl AttemptError {
    fn into_request_error(self, upstream: &Upstream) -> RequestError {
        let unreachable = |cause| RequestError::UpstreamUnreachable {
            upstream: format!("{} ({})", upstream.name, upstream.url),
            cause,
        };
        match self {
            AttemptError::Timeout(timeout) => RequestError::UpstreamTimeout {
                upstream: upstream.name.clone(),
                timeout,
            },
            AttemptError::TooLarge => RequestError::BodyTooLarge,
            AttemptError::Client(cause) => RequestError::BadBody(cause),
            AttemptError::Stale(cause) | AttemptError::Other(cause) => unreachable(cause),
        }
    }
}

async fn attempt(
    req: Request<RequestBody>,
    client: &Client<HttpConnector, RequestBody>,
    via: &Via<'_>,
) -> Result<Response<Incoming>, AttemptError> {
    let timeout = via.snap.config.proxy.response_timeout;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(AttemptError::Timeout(timeout)),
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) if RequestBody::caused::<BodyTooLarge>(&e) => Err(AttemptError::TooLarge),
        Ok(Err(e)) if RequestBody::caused::<ClientBodyError>(&e) => {
            Err(AttemptError::Client(causes(&e)))
        }
        Ok(Err(e)) if !e.is_connect() && closed_early(&e) => Err(AttemptError::Stale(causes(&e))),
        Ok(Err(e)) => Err(AttemptError::Other(causes(&e))),
    }
}

/// The upstream closed or reset the connection before any response arrived.
fn closed_early(e: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind::*;
    chain(e).any(|err| {
        let hyper_closed = err
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled());
        let io_closed = err.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
        });
        hyper_closed || io_closed
    })
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A copy of a bodiless request, made before the original is sent.
fn replayable(parts: &http::request::Parts) -> Request<RequestBody> {
    let mut again = Request::new(RequestBody::empty());
    *again.method_mut() = parts.method.clone();
    *again.uri_mut() = parts.uri.clone();
    *again.version_mut() = parts.version;
    *again.headers_mut() = parts.headers.clone();
    again
}

/// An error and its sources as one line: "client error (Connect): tcp connect error: ...".
fn causes(e: &(dyn StdError + 'static)) -> String {
    chain(e)
        .map(|err| err.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
