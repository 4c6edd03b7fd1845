//! One GET on a fresh connection, with the proxy's own HTTP/1.1 client: the same request
//! encoder, response parser and body decoder as every proxied request. The health checker
//! uses it (a fresh connection tests the app's ability to accept one, which a warm pooled
//! connection would not), and so do the `switch` and `reload` commands to ask the daemon.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::net::TcpStream;

use super::exchange::{exchange, Conn, Outgoing};
use super::response_body::UpstreamBody;
use super::wire;
use crate::config::Upstream;
use crate::http::body::Body;

/// What a probe got back.
#[derive(Debug)]
pub struct ProbeAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// GETs `path` from `addr` (`host` for the `Host` header), reading at most `limit` bytes
/// of body, all within `timeout`. The error names the address and what failed.
pub async fn get(
    addr: &str,
    host: &str,
    path: &str,
    limit: usize,
    timeout: Duration,
) -> Result<ProbeAnswer, String> {
    match tokio::time::timeout(timeout, attempt(addr, host, path, limit)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
    }
}

async fn attempt(addr: &str, host: &str, path: &str, limit: usize) -> Result<ProbeAnswer, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr} failed: {e}"))?;
    let _ = stream.set_nodelay(true);
    let failed = |e: String| format!("GET {path} on {addr}: {e}");
    let host = HeaderValue::from_str(host).map_err(|e| failed(e.to_string()))?;
    let headers: [(HeaderName, HeaderValue); 3] = [
        (header::HOST, host),
        (header::USER_AGENT, HeaderValue::from_static("switchyard")),
        (header::CONNECTION, HeaderValue::from_static("close")),
    ];
    let mut out = Outgoing {
        head: wire::encode_request(
            &Method::GET,
            path,
            headers.iter().map(|(n, v)| (n, v)),
            false,
        ),
        body: None,
        chunked: false,
        head_request: false,
        raw_headers: false,
    };
    let mut conn = Conn::new(stream);
    let head = exchange(&mut conn, &mut out)
        .await
        .map_err(|e| failed(format!("{e:?}")))?
        .head;
    let body = Body::upstream(UpstreamBody::start(conn, head.framing, None, None));
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    Ok(ProbeAnswer {
        status: head.status,
        body,
    })
}

/// `get` for callers outside a runtime (the command-line tools).
pub fn get_blocking(addr: SocketAddr, host: &str, path: &str, limit: usize) -> Option<ProbeAnswer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let addr = addr.to_string();
    let timeout = Duration::from_secs(2);
    runtime
        .block_on(get(&addr, host, path, limit, timeout))
        .ok()
}

/// Checks `upstream` once: its health path if it has one, else a TCP connect.
pub async fn check(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = upstream.authority.as_str();
    let Some(path) = &upstream.health else {
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
            Err(_) => Err(format!("no answer from {addr} within {timeout:?}")),
        };
    };
    let answer = get(addr, addr, path.as_str(), PROBE_BODY_LIMIT, timeout).await?;
    match answer.status.is_success() {
        true => Ok(()),
        false => Err(format!(
            "GET {path} on {addr} answered {}",
            answer.status.as_u16()
        )),
    }
}

/// A health answer's body is read (so the connection ends cleanly) but not kept.
const PROBE_BODY_LIMIT: usize = 64 * 1024;
