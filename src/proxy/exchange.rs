//! One request/response exchange on an upstream connection, driven by the request's own
//! task: write the head (and stream the body), then read until the response head is in.

use std::io;

use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request_body::{BodyTooLarge, ClientBodyError, RequestBody};
use super::wire::{self, Parsed, ResponseHead};

/// Read buffer growth; a small response arrives whole in the first read.
const READ_CHUNK: usize = 16 * 1024;
const MIN_READ_ROOM: usize = 4 * 1024;

/// An upstream connection and the bytes read from it but not consumed yet.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// Taken from the pool: the upstream may have closed it meanwhile.
    pub reused: bool,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::new(),
            reused: false,
        }
    }
}

/// The request as it goes upstream.
pub struct Outgoing {
    /// The encoded head, kept so that a retry writes the same bytes again.
    pub head: Vec<u8>,
    /// The client's body, consumed by the first attempt.
    pub body: Option<RequestBody>,
    /// Whether the body goes out chunked (the client sent no Content-Length).
    pub chunked: bool,
    pub head_request: bool,
}

#[derive(Debug)]
pub enum ExchangeError {
    /// Closed or reset before any byte of a response arrived.
    Closed(String),
    /// The client's body crossed `max_request_body`.
    TooLarge,
    /// The client's body could not be read.
    ClientBody(String),
    Other(String),
}

pub async fn exchange(conn: &mut Conn, out: &mut Outgoing) -> Result<ResponseHead, ExchangeError> {
    write_request(conn, out).await?;
    read_head(conn, out.head_request).await
}

/// Writes the head and the body. The head goes out together with the first piece of the
/// body (one write, as hyper's client does), and later pieces as they arrive.
async fn write_request(conn: &mut Conn, out: &mut Outgoing) -> Result<(), ExchangeError> {
    let Some(mut body) = out.body.take() else {
        return conn.stream.write_all(&out.head).await.map_err(write_error);
    };
    let mut pending = out.head.clone();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_error)?;
        let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) else {
            continue; // trailers are not forwarded
        };
        if out.chunked {
            pending.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            pending.extend_from_slice(data);
            pending.extend_from_slice(b"\r\n");
        } else {
            pending.extend_from_slice(data);
        }
        if hyper::body::Body::is_end_stream(&body) {
            break;
        }
        conn.stream.write_all(&pending).await.map_err(write_error)?;
        pending.clear();
    }
    if out.chunked {
        pending.extend_from_slice(b"0\r\n\r\n");
    }
    conn.stream.write_all(&pending).await.map_err(write_error)
}

async fn read_head(conn: &mut Conn, head_request: bool) -> Result<ResponseHead, ExchangeError> {
    let mut received = !conn.buf.is_empty();
    let mut scanned = 0;
    loop {
        if !conn.buf.is_empty() {
            match wire::parse_response(&mut conn.buf, head_request, &mut scanned) {
                Ok(Parsed::Final(head)) => return Ok(head),
                Ok(Parsed::Interim) => {
                    scanned = 0;
                    continue;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(ExchangeError::Other(e.to_string())),
            }
        }
        if conn.buf.capacity() - conn.buf.len() < MIN_READ_ROOM {
            // Only when the spare room runs out: the previous responses' bytes may still be
            // on their way to clients, and the rest of the allocation is ours to fill.
            conn.buf.reserve(READ_CHUNK);
        }
        match conn.stream.read_buf(&mut conn.buf).await {
            Ok(0) if !received => {
                return Err(ExchangeError::Closed(
                    "connection closed before any response".into(),
                ))
            }
            Ok(0) => {
                return Err(ExchangeError::Other(
                    "connection closed in the middle of the response head".into(),
                ))
            }
            Ok(_) => received = true,
            Err(e) if !received && closed(&e) => return Err(ExchangeError::Closed(e.to_string())),
            Err(e) => return Err(ExchangeError::Other(e.to_string())),
        }
    }
}

fn closed(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn write_error(e: io::Error) -> ExchangeError {
    match closed(&e) {
        true => ExchangeError::Closed(e.to_string()),
        false => ExchangeError::Other(e.to_string()),
    }
}

fn body_error(e: Box<dyn std::error::Error + Send + Sync>) -> ExchangeError {
    if e.is::<BodyTooLarge>() {
        return ExchangeError::TooLarge;
    }
    match e.downcast::<ClientBodyError>() {
        Ok(client) => ExchangeError::ClientBody(client.to_string()),
        Err(other) => ExchangeError::Other(other.to_string()),
    }
}
