//! The listening sockets: one per address, bound once before anything is served.
//!
//! No SO_REUSEPORT: with it a second, accidentally started instance would silently share
//! the port instead of failing to start.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpSocket;

const BACKLOG: u32 = 4096;

/// Binds every address before anything is served, so a port conflict fails startup.
/// Must run inside a tokio runtime.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, (SocketAddr, io::Error)> {
    addrs
        .iter()
        .map(|addr| bind_one(*addr).map_err(|e| (*addr, e)))
        .collect()
}

fn bind_one(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}
