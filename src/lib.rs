//! switchyard: a reverse proxy and static file server for one application host behind a
//! cloud load balancer, with an atomically swapped configuration snapshot for blue/green.
//!
//! Layers, each importing only those listed before it (`tests/architecture.rs` checks):
//!
//! ```text
//! sys      clock, socket reads and writes, page cache, deadline board, passed sockets
//! config   the TOML file: raw -> validated -> model, errors with line and column
//! http     bodies, heads, chunked coding, smuggling scan, connection clocks,
//!          h1 server + hyper (connection), upstream client (upstream/)
//! state    snapshot (the one swappable value), upstream health, metrics, access log
//! policy   what to answer: dispatch -> request_checks -> routing -> endpoints | proxy |
//!          static_files; errors -> status codes
//! serve    listeners, workers, accept + hand-over, respond (snapshot loaded once per
//!          request), reporting (access log and metrics when a response is done)
//! control  daemon, signals, reload, prober, admin + Prometheus text, the commands
//! ```
//!
//! A request flows one way: `serve::accept` -> `http::connection` (`http::h1` reads the
//! head; hyper serves what is not plain HTTP/1.1) -> `serve::respond` loads the snapshot
//! -> `policy::dispatch` -> a response body that `serve::reporting` reports when done.
//! Only `control::reload` (and the `switch` it performs) replaces the snapshot.

pub mod config;
pub(crate) mod control;
pub(crate) mod http;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod state;
pub(crate) mod sys;

pub use control::{cli, daemon};

/// What fuzz targets, benches and integration tests drive directly, without a process:
/// the request parser and dispatcher pieces, the upstream response parser, the path rules.
pub mod parts {
    pub use crate::http::body::Body;
    pub use crate::http::client_body::ClientBody;
    pub use crate::http::conn_clock::ConnClock;
    pub use crate::http::connection::{self, Respond};
    pub use crate::http::h1::request::{parse as parse_request, ParsedRequest};
    pub use crate::http::head::classify;
    pub use crate::http::tracked_body::TrackedBody;
    pub use crate::http::upstream::response_body::{Decoder, Step};
    pub use crate::http::upstream::wire::{parse_response, ParsedResponse};
    pub use crate::policy::request_checks;
    pub use crate::policy::routing;
    pub use crate::policy::static_files::{lookup, sanitize, Found, Options};
}
