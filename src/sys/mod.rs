//! The operating system and runtime underneath: the cheap clock, the socket's reads and
//! writes, page-cache residency, futures polled only when woken, the per-worker board of
//! deadlines, and sockets passed by systemd. Nothing here knows HTTP.

pub mod coarse_clock;
pub mod deadlines;
pub mod gated;
pub mod page_cache;
pub mod socket;
pub mod socket_activation;
