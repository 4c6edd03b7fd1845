//! The HTTP/1.1 client to upstreams: request heads and response framing on the wire,
//! one exchange on a connection, the per-worker pool, the bodies both ways, WebSocket
//! tunnels, and the one-off probe health checks use.
//!
//! Neither body is buffered: the client's body is written upstream as it arrives
//! (`exchange`) and the upstream's is decoded as it is asked for (`response_body`).

pub mod exchange;
pub mod failure;
pub mod pool;
pub mod probe;
pub mod request_body;
pub mod response_body;
pub mod tunnel;
pub mod wire;
