//! How a proxied request can fail on the upstream's side.

/// Why a proxied request failed on the upstream's side, for the `cause` label. The
/// variants name what an operator would look at next: the app's process (`refused`), the
/// network or a saturated accept queue (`connect_timeout`), the app dying mid-request
/// (`reset`, `truncated`), its speed (`response_timeout`) or its HTTP (`bad_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Connection refused: nothing listens (the app is down or restarting).
    Refused,
    /// No connection within `connect_timeout`.
    ConnectTimeout,
    /// Any other connect error (no route to host, out of local ports...).
    ConnectError,
    /// Reset or closed before a whole response head came (a pooled connection's close
    /// that the one safe retry absorbed is not counted: the request did not fail).
    Reset,
    /// No response head within `response_timeout` (answered 504).
    ResponseTimeout,
    /// A response head or chunked body that does not parse.
    BadResponse,
    /// The body stopped short after the head had gone to the client.
    Truncated,
}

impl UpstreamFailure {
    pub const ALL: [UpstreamFailure; 7] = [
        UpstreamFailure::Refused,
        UpstreamFailure::ConnectTimeout,
        UpstreamFailure::ConnectError,
        UpstreamFailure::Reset,
        UpstreamFailure::ResponseTimeout,
        UpstreamFailure::BadResponse,
        UpstreamFailure::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Refused => "refused",
            UpstreamFailure::ConnectTimeout => "connect_timeout",
            UpstreamFailure::ConnectError => "connect_error",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::ResponseTimeout => "response_timeout",
            UpstreamFailure::BadResponse => "bad_response",
            UpstreamFailure::Truncated => "truncated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
