//! The commands that act on a running daemon: `switch`, `reload`, `status`, `canary`.

pub mod canary;
pub mod reload;
pub mod running;
pub mod status;
pub mod switch;
