//! What the daemon knows, shared between workers: the configuration snapshot (the one
//! swappable value), the upstream health table, the metrics counters and the access-log
//! buffer.

pub mod access_log;
pub mod canary;
pub mod judgement;
pub mod latency;
pub mod log_budget;
pub mod metrics;
pub mod snapshot;
pub mod upstream_health;
