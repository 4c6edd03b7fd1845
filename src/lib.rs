//! switchyard: a reverse proxy and static file server for one application host behind a
//! cloud load balancer, with an atomically swapped configuration snapshot for blue/green.
//!
//! A request flows one way: `server` accepts -> `connection` has `http1` read it (and hyper
//! serve it, for anything but a plain HTTP/1.1 request) -> `server::respond` loads the
//! `snapshot` once -> `handler` runs `request_checks`, `router` decides -> `health`,
//! `proxy` or `static_files` answers. Only `reload` writes the snapshot.

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod body;
pub mod cli;
pub mod coarse_clock;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod deadlines;
pub mod error;
pub mod framing;
pub mod gated;
pub mod handler;
pub mod health;
pub mod health_checks;
pub mod http1;
pub mod metrics;
pub mod observe;
pub mod prometheus;
pub mod proxy;
pub mod reload;
pub mod request_checks;
pub mod router;
pub mod server;
pub mod short_read;
pub mod signals;
pub mod snapshot;
pub mod socket_activation;
pub mod static_files;
pub mod timeouts;
pub mod upstream_health;
pub mod worker;
