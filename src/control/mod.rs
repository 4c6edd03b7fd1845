//! The daemon around the server: startup and shutdown, signals, reloads, the health
//! prober, the admin listener and its Prometheus text, and the commands (`switch`,
//! `reload`, `status`) that act on a running daemon.

pub mod admin;
pub mod canary;
pub mod cli;
pub mod daemon;
pub mod prober;
pub mod prometheus;
pub mod reload;
pub mod signals;
