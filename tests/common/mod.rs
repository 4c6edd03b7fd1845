//! Shared test scaffolding: the real `switchyard` binary on an ephemeral loopback port,
//! real HTTP upstreams, and small clients. Every process a test starts is killed by pid
//! when its handle drops.

#![allow(dead_code, unused_imports)]

pub mod client;
pub mod daemon;
pub mod monitoring;
pub mod upstream;

pub use client::*;
pub use daemon::*;
pub use monitoring::*;
pub use upstream::*;
