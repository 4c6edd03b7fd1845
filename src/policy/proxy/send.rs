//! One proxied request on the wire: a pooled (or new) connection, `response_timeout`,
//! the mapping of failures to 502, 504, 413 and 400, and the single safe retry.

use std::time::Duration;

use super::ForwardContext;
use crate::config::Upstream;
use crate::http::upstream::exchange::{exchange, Answered, Conn, ExchangeError, Outgoing, Upload};
use crate::http::upstream::failure::UpstreamFailure;
use crate::http::upstream::wire::ResponseHead;
use crate::policy::errors::RequestError;
use crate::sys::deadlines::Deadlines;

/// A request sent and its response head read.
pub struct Sent {
    /// The connection the response body is read from.
    pub conn: Conn,
    pub head: ResponseHead,
    /// What of the request's body is still to be sent.
    pub upload: Option<Upload>,
}

impl Sent {
    fn on(conn: Conn, answered: Answered) -> Self {
        let Answered { head, upload } = answered;
        Sent { conn, head, upload }
    }
}

/// Sends on a pooled connection if there is one. No response headers within
/// `response_timeout` is a 504. A request that can be replayed (idempotent, no body) and
/// fails because its pooled connection was already closed by the upstream (the race
/// between reuse and the app's keep-alive timeout, or an app restart) is sent once more on
/// a new connection; nothing else is ever replayed.
pub async fn send(
    out: &mut Outgoing,
    replayable: bool,
    upstream: &Upstream,
    via: &ForwardContext<'_>,
    what: impl Fn() -> String,
) -> Result<Sent, RequestError> {
    let timeout = via.snap.config.proxy.response_timeout;
    if let Some(mut conn) = via.client.checkout(&upstream.authority).await {
        match attempt(&mut conn, out, timeout, via.deadlines).await {
            Ok(answered) => return Ok(Sent::on(conn, answered)),
            Err(AttemptError::Exchange(ExchangeError::Closed(cause))) if replayable => {
                tracing::info!(
                    "retrying {} on a new connection to {}: {cause}",
                    what(),
                    upstream.name
                );
            }
            Err(e) => return Err(e.into_request_error(upstream)),
        }
    }
    let mut conn = via
        .client
        .connect(&upstream.authority)
        .await
        .map_err(|e| unreachable(upstream, e.to_string(), e.failure()))?;
    match attempt(&mut conn, out, timeout, via.deadlines).await {
        Ok(answered) => Ok(Sent::on(conn, answered)),
        Err(e) => Err(e.into_request_error(upstream)),
    }
}

enum AttemptError {
    Timeout(Duration),
    Exchange(ExchangeError),
}

async fn attempt(
    conn: &mut Conn,
    out: &mut Outgoing,
    timeout: Duration,
    deadlines: &Deadlines,
) -> Result<Answered, AttemptError> {
    match deadlines.within(timeout, exchange(conn, out)).await {
        Err(_) => Err(AttemptError::Timeout(timeout)),
        Ok(result) => result.map_err(AttemptError::Exchange),
    }
}

impl AttemptError {
    fn into_request_error(self, upstream: &Upstream) -> RequestError {
        match self {
            AttemptError::Timeout(timeout) => RequestError::UpstreamTimeout {
                upstream: upstream.name.clone(),
                timeout,
            },
            AttemptError::Exchange(ExchangeError::TooLarge) => RequestError::BodyTooLarge,
            AttemptError::Exchange(ExchangeError::ClientBody(cause)) => {
                RequestError::BadBody(cause)
            }
            AttemptError::Exchange(ExchangeError::Closed(cause) | ExchangeError::Broken(cause)) => {
                unreachable(upstream, cause, UpstreamFailure::Reset)
            }
            AttemptError::Exchange(ExchangeError::Malformed(cause)) => {
                unreachable(upstream, cause, UpstreamFailure::BadResponse)
            }
        }
    }
}

/// A 502 naming the upstream and the cause (for the log, never the client).
pub(super) fn unreachable(
    upstream: &Upstream,
    cause: String,
    failure: UpstreamFailure,
) -> RequestError {
    RequestError::UpstreamUnreachable {
        upstream: format!("{} ({})", upstream.name, upstream.url),
        cause,
        failure,
    }
}
