//! Facts about the client connection a request came on, set once per connection.

use std::net::IpAddr;
use std::sync::Mutex;

use http::HeaderValue;
use tokio::sync::OwnedSemaphorePermit;

/// The client end of a connection, rendered once per connection.
pub struct Peer {
    pub ip: IpAddr,
    pub header_value: HeaderValue,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Self {
        let header_value = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Peer { ip, header_value }
    }
}

/// A connection's permit under `max_connections`, which an upgrade can take over.
pub struct ConnPermit(Mutex<Option<OwnedSemaphorePermit>>);

impl ConnPermit {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        ConnPermit(Mutex::new(Some(permit)))
    }

    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
