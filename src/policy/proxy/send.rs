//! One proxied request on the wire: a pooled (or new) connection, `response_timeout`,
//! the mapping of failures to 502, 504, 413 and 400, and the single safe retry.

use std::time::Duration;

use super::Via;
use crate::config::Upstream;
use crate::http::upstream::exchange::{exchange, Conn, ExchangeError, Outgoing, Upload};
use crate::http::upstream::failure::UpstreamFailure;
use crate::http::upstream::wire::ResponseHead;
use crate::policy::errors::RequestError;
use crate::sys::deadlines::Deadlines;

/// Sends on a pooled connection if there is one. No response headers within
/// `response_timeout` is a 504. A request that can be replayed (idempotent, no body) and
/// fails because its pooled connection was already closed by the upstream (the race
/// between reuse and the app's keep-alive timeout, or an app restart) is sent once more on
/// a new connection; nothing else is ever replayed.
pub async fn send(
    out: &mut Outgoing,
    replayable: bool,
    upstream: &Upstream,
    via: &Via<'_>,
    what: impl Fn() -> String,
) -> Result<(Conn, ResponseHead, Option<Upload>), RequestError> {
    let timeout = via.snap.config.proxy.response_timeout;
    if let Some(mut conn) = via.client.checkout(&upstream.authority).await {
        match attempt(&mut conn, out, timeout, via.deadlines).await {
            Ok((head, upload)) => return Ok((conn, head, upload)),
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
        Ok((head, upload)) => Ok((conn, head, upload)),
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
) -> Result<(ResponseHead, Option<Upload>), AttemptError> {
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
