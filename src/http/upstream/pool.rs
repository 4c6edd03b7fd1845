//! Keep-alive connections to upstreams: one pool per worker thread, keyed by upstream
//! authority, holding idle HTTP/1.1 connections for reuse.
//!
//! Hand-written instead of hyper-util's pooled client because compare.py's proxy-small
//! profile put most of switchyard's extra CPU over nginx in that client's layers: a pool
//! lookup through a SipHash map, a channel hop to a separate connection task and a oneshot
//! back, per request. Here the request's own task takes a connection out of a short list,
//! writes, reads and puts it back; a worker is one thread, so nothing here is contended.
//!
//! A connection idle for `pool_idle_timeout` is never reused and is closed by the
//! worker's reaper within a second after that, which is how connections to the old color
//! go away after a blue/green switch. The connections survive reloads; the pool is
//! rebuilt (and its idle connections closed) only when its own settings change.

use std::future::poll_fn;
use std::io;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::uri::Authority;
use tokio::net::TcpStream;

use super::exchange::Conn;
use crate::config::ProxySettings;
use crate::http::upstream::failure::UpstreamFailure;
use crate::sys::coarse_clock;

/// Per upstream, per worker; beyond it a finished connection is closed instead of kept.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Read buffers larger than this are not kept with an idle connection.
const MAX_KEPT_BUFFER: usize = 32 * 1024;

pub struct UpstreamClient {
    idle: Mutex<Vec<Slot>>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
}

/// Idle connections to one upstream, most recently used last.
struct Slot {
    authority: Authority,
    /// With their read buffers, whose allocation the next response reuses.
    /// With the `coarse_clock` time each became idle.
    conns: Vec<(Conn, Duration)>,
}

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tcp connect error: {0}")]
    Io(#[from] io::Error),
    #[error("tcp connect timed out after {0:?}")]
    Timeout(Duration),
}

impl ConnectError {
    pub fn failure(&self) -> UpstreamFailure {
        match self {
            ConnectError::Timeout(_) => UpstreamFailure::ConnectTimeout,
            ConnectError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                UpstreamFailure::Refused
            }
            ConnectError::Io(_) => UpstreamFailure::ConnectError,
        }
    }
}

impl UpstreamClient {
    pub fn new(settings: &ProxySettings) -> Self {
        UpstreamClient {
            idle: Mutex::new(Vec::new()),
            connect_timeout: settings.connect_timeout,
            pool_idle_timeout: settings.pool_idle_timeout,
        }
    }

    /// Whether this client can serve `settings` unchanged.
    pub fn fits(&self, settings: &ProxySettings) -> bool {
        self.connect_timeout == settings.connect_timeout
            && self.pool_idle_timeout == settings.pool_idle_timeout
    }

    /// The most recently used idle connection to `authority` that is still open.
    pub async fn checkout(&self, authority: &Authority) -> Option<Conn> {
        loop {
            let mut conn = self.take(authority)?;
            if still_open(&conn.stream).await {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    fn take(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let slot = idle.iter_mut().find(|s| same(&s.authority, authority))?;
        let now = coarse_clock::now();
        while let Some((conn, since)) = slot.conns.pop() {
            if now.saturating_sub(since) < self.pool_idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    /// A new connection, within `connect_timeout`.
    pub async fn connect(&self, authority: &Authority) -> Result<Conn, ConnectError> {
        let connecting = TcpStream::connect(authority.as_str());
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        stream.set_nodelay(true)?;
        Ok(Conn::new(stream))
    }

    /// Keeps a connection whose last response ended cleanly (its buffer is empty), for
    /// the next request.
    pub(super) fn checkin(&self, authority: &Authority, mut conn: Conn) {
        if conn.buf.capacity() > MAX_KEPT_BUFFER {
            // A large body grew it; idle connections should not pin that memory.
            conn.buf = BytesMut::new();
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = coarse_clock::now();
        match idle.iter_mut().find(|s| same(&s.authority, authority)) {
            Some(slot) if slot.conns.len() < MAX_IDLE_PER_UPSTREAM => slot.conns.push((conn, now)),
            Some(_) => {}
            None => idle.push(Slot {
                authority: authority.clone(),
                conns: vec![(conn, now)],
            }),
        }
    }

    /// Closes connections idle for `pool_idle_timeout` or longer.
    pub fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = coarse_clock::now();
        for slot in idle.iter_mut() {
            slot.conns
                .retain(|(_, since)| now.saturating_sub(*since) < self.pool_idle_timeout);
        }
        idle.retain(|slot| !slot.conns.is_empty());
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().map(|s| s.conns.len()).sum()
    }
}

/// Byte equality: every key comes from the same configuration text, and `Authority`'s
/// own case-insensitive comparison showed up in the profile.
fn same(a: &Authority, b: &Authority) -> bool {
    a.as_str() == b.as_str()
}

/// Whether an idle connection can take a request: the upstream has not closed it (FIN or
/// RST) nor sent anything unasked. Costs a syscall only when the socket reported itself
/// readable, which an idle keep-alive connection does only when something happened to it,
/// or once after the last response was read to its end.
async fn still_open(stream: &TcpStream) -> bool {
    poll_fn(|cx| {
        Poll::Ready(match stream.poll_read_ready(cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn client(idle: Duration) -> UpstreamClient {
        UpstreamClient {
            idle: Mutex::new(Vec::new()),
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: idle,
        }
    }

    #[tokio::test]
    async fn reuses_open_connections_and_skips_closed_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let c = client(Duration::from_secs(60));
        let first = c.connect(&authority).await.unwrap();
        let (mut first_peer, _) = listener.accept().await.unwrap();
        let second = c.connect(&authority).await.unwrap();
        let (_second_peer, _) = listener.accept().await.unwrap();
        let second_port = second.stream.local_addr().unwrap().port();
        c.checkin(&authority, second);
        c.checkin(&authority, first);
        // The most recent one (`first`) is closed by its peer: checkout must skip it.
        first_peer.shutdown().await.unwrap();
        drop(first_peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = c.checkout(&authority).await.unwrap();
        assert_eq!(got.stream.local_addr().unwrap().port(), second_port);
        assert!(got.reused);
        assert!(c.checkout(&authority).await.is_none());
    }

    #[tokio::test]
    async fn expired_connections_are_neither_reused_nor_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let c = client(Duration::from_millis(100));
        let s = c.connect(&authority).await.unwrap();
        let _peer = listener.accept().await.unwrap();
        c.checkin(&authority, s);
        assert_eq!(c.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.reap();
        assert_eq!(c.idle_count(), 0);
        let s = c.connect(&authority).await.unwrap();
        c.checkin(&authority, s);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(c.checkout(&authority).await.is_none());
    }
}
