//! Differential harness for the upstream side of the HTTP edge: the same response bytes,
//! in the same pieces, read by switchyard's upstream client (its head parser,
//! `proxy::wire`, and body decoder, `proxy::Decoder`, the code every proxied response goes
//! through) and by hyper's client. The rule: switchyard refuses the response (a 502) or
//! reads the same status, end-to-end headers and body, or cuts the body where hyper reads
//! it whole (stricter); it never reads a body hyper refuses, and it never keeps a
//! connection for reuse that hyper would not.

use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use switchyard::parts::{classify, parse_response, Decoder, ParsedResponse as Parsed, Step};

/// A response as the client would get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// `None`: cut short or malformed.
    pub body: Option<Vec<u8>>,
    /// The connection may carry another request.
    pub reusable: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub ours: Option<Read>,
    pub hyper: Option<Read>,
    /// Whether the upstream closed the connection after its bytes (else it stays open).
    pub closes: bool,
}

impl Outcome {
    pub fn verdict(&self) -> Result<(), String> {
        let Some(ours) = &self.ours else {
            return Ok(()); // refused: a 502
        };
        let Some(theirs) = &self.hyper else {
            return Err(format!(
                "switchyard read a response hyper refuses: {self:#?}"
            ));
        };
        if (ours.status, &ours.headers) != (theirs.status, &theirs.headers) {
            return Err(format!("heads differ: {self:#?}"));
        }
        match (&ours.body, &theirs.body) {
            (Some(a), Some(b)) if a != b => return Err(format!("bodies differ: {self:#?}")),
            (Some(_), None) => {
                return Err(format!("switchyard read a body hyper refuses: {self:#?}"))
            }
            _ => {}
        }
        if !self.closes && ours.reusable && !theirs.reusable {
            return Err(format!(
                "switchyard would reuse a connection hyper would not: {self:#?}"
            ));
        }
        Ok(())
    }
}

/// Reads `pieces` as the answer to a GET (or HEAD) with both clients.
pub fn run(pieces: &[&[u8]], head_request: bool, closes: bool) -> Outcome {
    let ours = ours(pieces, head_request, closes);
    let hyper = RUNTIME.with(|rt| rt.block_on(hyper(pieces, head_request, closes)));
    Outcome {
        ours,
        hyper,
        closes,
    }
}

thread_local! {
    // Paused time: a client waiting for bytes that never come times out at once.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime for the harness");
}

fn ours(pieces: &[&[u8]], head_request: bool, closes: bool) -> Option<Read> {
    let mut pieces = pieces.iter();
    let mut buf = BytesMut::new();
    let mut scanned = 0;
    let head = loop {
        match parse_response(&mut buf, head_request, false, &mut scanned) {
            Ok(Parsed::Final(head)) => break head,
            Ok(Parsed::Interim) => scanned = 0,
            Ok(Parsed::Partial) => buf.extend_from_slice(pieces.next()?),
            Err(_) => return None,
        }
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    let body = loop {
        match decoder.step(&mut buf) {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::Done => break Some(body),
            Step::Invalid => break None,
            Step::More => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None if closes && decoder.at_end() => break Some(body),
                None => break None,
            },
        }
    };
    // The pool keeps a connection only when the response ended exactly where the bytes
    // did, and drops an idle one that becomes readable (more bytes, or the close).
    let rest_empty = buf.is_empty() && pieces.all(|p| p.is_empty());
    let reusable = head.reusable && body.is_some() && decoder.is_done() && rest_empty && !closes;
    let mut headers = head.headers;
    headers.remove(http::header::CONTENT_LENGTH);
    Some(Read {
        status: head.status.as_u16(),
        headers: list(&headers),
        body,
        reusable,
    })
}

/// By name (the order of different names means nothing; a `HeaderMap` that lost one may
/// have moved another), each name's values in their order.
fn list(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// hyper's reading, with the headers switchyard would relay: neither hop-by-hop ones,
/// nor those `Connection` names, nor the framing.
async fn hyper(pieces: &[&[u8]], head_request: bool, closes: bool) -> Option<Read> {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
    let upstream = tokio::spawn(async move {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if server.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        for piece in pieces {
            server.write_all(&piece).await.ok()?;
            tokio::task::yield_now().await;
        }
        match closes {
            true => drop(server),
            false => std::future::pending::<()>().await,
        }
        Some(())
    });
    let limit = Duration::from_secs(30);
    let read = tokio::time::timeout(limit, async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .ok()?;
        let conn = tokio::spawn(conn);
        let method = if head_request {
            Method::HEAD
        } else {
            Method::GET
        };
        let req = Request::builder()
            .method(method)
            .uri("/")
            .header("host", "h")
            .body(Empty::<bytes::Bytes>::new())
            .ok()?;
        let res = sender.send_request(req).await.ok()?;
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(limit, body.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes().to_vec());
        let reusable = body.is_some()
            && matches!(
                tokio::time::timeout(Duration::from_millis(1), sender.ready()).await,
                Ok(Ok(()))
            );
        conn.abort();
        Some(Read {
            status: parts.status.as_u16(),
            headers: relayed(&parts.headers),
            body,
            reusable,
        })
    })
    .await
    .ok()
    .flatten();
    upstream.abort();
    read
}

fn relayed(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|e| String::from_utf8_lossy(e.trim_ascii()).to_ascii_lowercase())
        .collect();
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let hop = classify(name.as_str().as_bytes()).is_hop_by_hop();
        let framing = *name == http::header::CONTENT_LENGTH;
        let named = listed.iter().any(|l| l == name.as_str())
            && !matches!(name.as_str(), "content-length" | "host");
        if !hop && !framing && !named {
            kept.append(name.clone(), value.clone());
        }
    }
    list(&kept)
}
