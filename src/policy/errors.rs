//! Every way a request can fail, mapped to its status code and body in one place.
//!
//! Bodies are short plain text that name no internal address: the upstream's name and the
//! cause go to the error log, not to the client.

use std::time::Instant;

use http::{header, HeaderValue, Response, StatusCode};
use thiserror::Error;

use crate::http::body::Body;
use crate::http::upstream::failure::UpstreamFailure;
use crate::state::log_budget::LogBudget;

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("malformed request path")]
    BadPath,
    #[error("missing, repeated or invalid Host")]
    BadHost,
    #[error("request has both Content-Length and Transfer-Encoding")]
    AmbiguousFraming,
    #[error("bad request body: {0}")]
    BadBody(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("CONNECT and TRACE are not proxied")]
    MethodNotProxied,
    #[error("a transfer coding other than chunked")]
    UnknownCoding,
    #[error("request body larger than max_request_body")]
    BodyTooLarge,
    #[error("upstream {upstream} unreachable: {cause}")]
    UpstreamUnreachable {
        upstream: String,
        cause: String,
        failure: UpstreamFailure,
    },
    #[error("upstream {upstream} sent no response headers within {timeout:?}")]
    UpstreamTimeout {
        upstream: String,
        timeout: std::time::Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BadPath
            | RequestError::BadHost
            | RequestError::AmbiguousFraming
            | RequestError::BadBody(_) => StatusCode::BAD_REQUEST,
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed | RequestError::MethodNotProxied => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            RequestError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            RequestError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            RequestError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RequestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// For `switchyard_upstream_failures_total`: the upstream's failures, not the client's.
    pub fn upstream_failure(&self) -> Option<UpstreamFailure> {
        match self {
            RequestError::UpstreamUnreachable { failure, .. } => Some(*failure),
            RequestError::UpstreamTimeout { .. } => Some(UpstreamFailure::ResponseTimeout),
            _ => None,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            RequestError::BadPath
            | RequestError::BadHost
            | RequestError::AmbiguousFraming
            | RequestError::BadBody(_) => "400 bad request\n",
            RequestError::NotFound => "404 not found\n",
            RequestError::MethodNotAllowed | RequestError::MethodNotProxied => {
                "405 method not allowed\n"
            }
            RequestError::BodyTooLarge => "413 request body too large\n",
            RequestError::UnknownCoding => "501 not implemented\n",
            RequestError::UpstreamUnreachable { .. } => "502 bad gateway\n",
            RequestError::UpstreamTimeout { .. } => "504 gateway timeout\n",
            RequestError::Internal(_) => "500 internal server error\n",
        }
    }

    /// Logs the proxy's own failures (a 501 is the client's doing) within `budget`.
    pub fn log(&self, budget: &LogBudget) {
        let status = self.status();
        if !status.is_server_error() || status == StatusCode::NOT_IMPLEMENTED {
            return;
        }
        match budget.admit(Instant::now()) {
            None => {}
            Some(0) => tracing::error!(status = status.as_u16(), "{self}"),
            Some(n) => tracing::error!(
                status = status.as_u16(),
                "{self} ({n} more request errors left out of the log since the last line)"
            ),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut res = Response::new(Body::full(self.body()));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            RequestError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            RequestError::MethodNotProxied => {
                let proxied = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
                headers.insert(header::ALLOW, HeaderValue::from_static(proxied));
                // A CONNECT client may already be sending tunnel bytes.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // The rest of this connection's bytes cannot be trusted to be framed right.
            RequestError::AmbiguousFraming
            | RequestError::BadHost
            | RequestError::UnknownCoding
            | RequestError::BodyTooLarge
            | RequestError::BadBody(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }
}
