//! The protocol, both directions: message bodies, header classification and hop-by-hop
//! rules, chunked coding, the request-smuggling scan, the connection's clocks, the
//! HTTP/1.1 server (`h1`, hyper behind it in `connection`), and the upstream client
//! (`upstream`). Knows nothing of routes, snapshots or metrics.

pub mod body;
pub mod chunked;
pub mod client_body;
pub mod clocked_io;
pub mod conn_clock;
pub mod connection;
pub mod file_body;
pub mod h1;
pub mod head;
pub mod hop_by_hop;
pub mod raw_headers;
pub mod smuggling;
pub mod tracked_body;
pub mod upstream;
