//! The HTTP/1.1 wire format towards upstreams: the request head switchyard writes, the
//! response head it parses (with httparse, as hyper does), and how the response body is
//! framed (RFC 9112 section 6.3).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::http::head::{
    classify, elements_of, has_close, head_end, names_a_header, WireName, MAX_HEAD,
};
use crate::http::hop_by_hop::remove_listed;
use crate::http::raw_headers::RawHeaders;
const MAX_HEADERS: usize = 128;

/// The request head as bytes, ready to write (and to write again for a retry).
pub fn encode_request<'a>(
    method: &Method,
    target: &str,
    headers: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    chunked: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection (no length, or an unknown coding).
    UntilClose,
    /// 101: the connection now belongs to the upgraded protocol.
    Upgrade,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// Empty when the headers came as `raw`.
    pub headers: HeaderMap,
    pub raw: Option<RawHeaders>,
    pub framing: Framing,
    /// Whether the connection can carry another request once this body has been read.
    pub reusable: bool,
}

/// What the bytes at the start of a read buffer held.
#[derive(Debug)]
pub enum ParsedResponse {
    /// Not a whole head yet; nothing consumed.
    Partial,
    /// A 1xx other than 101, consumed and to be ignored.
    Interim,
    /// The final head, consumed; the body's first bytes (if any) follow in the buffer.
    Final(ResponseHead),
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("invalid response head: {0}")]
    Syntax(httparse::Error),
    #[error("invalid response header {0}")]
    Header(String),
    #[error("response head larger than {} KiB", MAX_HEAD / 1024)]
    TooLarge,
    #[error("invalid chunked body")]
    Chunked,
}

/// Parses the response head at the start of `buf`. `head_request` says whether the
/// request was HEAD, whose response has no body whatever its headers say. With
/// `raw_wanted`, the kept headers come as relayed lines rather than a map, unless the
/// response is a 101 or has a `Connection` header naming headers to drop (rare).
///
/// The head is split off and frozen before parsing, so header values can point into it
/// (no copy, as in hyper) and no table of offsets has to be built and zeroed: the profile
/// showed a zeroed 4 KiB table as the largest single cost of the proxy path.
///
/// For a head arriving in pieces, `scanned` remembers how far earlier calls looked for its
/// end, so an upstream dripping a head byte by byte costs linear time, not quadratic.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    raw_wanted: bool,
    scanned: &mut usize,
) -> Result<ParsedResponse, WireError> {
    let found = head_end(buf, *scanned);
    // The next search restarts a little before the end, where "\n\r\n" may straddle it.
    *scanned = buf.len().saturating_sub(2);
    let end = match found {
        Some(end) if end <= MAX_HEAD => end,
        Some(_) => return Err(WireError::TooLarge),
        None if buf.len() >= MAX_HEAD => return Err(WireError::TooLarge),
        None => return Ok(ParsedResponse::Partial),
    };
    let head = buf.split_to(end).freeze();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, &head, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) if len == end => {}
        Ok(_) => return Err(WireError::Header("head ends unexpectedly".into())),
        Err(e) => return Err(WireError::Syntax(e)),
    }
    let code = res.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Header(format!("status {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(ParsedResponse::Interim);
    }
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let raw_ok = raw_wanted
        && status != StatusCode::SWITCHING_PROTOCOLS
        && !res
            .headers
            .iter()
            .any(|h| match classify(h.name.as_bytes()) {
                WireName::Connection => elements_of(h.value).any(names_a_header),
                // A HEAD response's length is relayed, unless Transfer-Encoding overrides it.
                WireName::TransferEncoding => head_request,
                _ => false,
            });
    let mut hop = Hop::default();
    let (headers, raw) = match raw_ok {
        true => {
            let mut raw = RawHeaders::with_capacity(head.len());
            for h in res.headers.iter() {
                let kind = classify(h.name.as_bytes());
                // The framing is the writer's to choose (a HEAD response's length is
                // added below, once).
                if hop.note(kind, h.value, status)? && kind != WireName::ContentLength {
                    raw.push(h.name.as_bytes(), h.value);
                }
            }
            if let (true, Some(len)) = (head_request, hop.content_length) {
                // The length the GET would have, however many times the upstream said it.
                raw.push(
                    b"content-length",
                    itoa::Buffer::new().format(len).as_bytes(),
                );
            }
            (HeaderMap::new(), Some(raw))
        }
        false => (mapped(&head, res.headers, &mut hop, status)?, None),
    };
    if version == Version::HTTP_10 && hop.transfer_encoding.is_some() {
        // RFC 9112 6.1: faulty framing (hyper's client refuses it too).
        return Err(WireError::Header(
            "transfer-encoding in an HTTP/1.0 response".into(),
        ));
    }
    let (framing, reusable) = framing(status, version, &hop, head_request);
    Ok(ParsedResponse::Final(ResponseHead {
        status,
        headers,
        raw,
        framing,
        reusable,
    }))
}

/// The kept headers as a map (a 101's, or for a client hyper serves).
fn mapped(
    head: &Bytes,
    parsed: &[httparse::Header<'_>],
    hop: &mut Hop,
    status: StatusCode,
) -> Result<HeaderMap, WireError> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| WireError::Header(h.name.to_owned()))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| WireError::Header(name.to_string()))?;
        let kind = classify(name.as_str().as_bytes());
        if hop.note(kind, h.value, status)? && kind != WireName::ContentLength {
            headers.append(name, value);
        }
    }
    // One length, however many times the upstream said it (hyper drops a connection whose
    // response repeats it); none when Transfer-Encoding overrides it (RFC 9112 6.3).
    if let (None, Some(len)) = (hop.transfer_encoding, hop.content_length) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    for value in &hop.listed {
        remove_listed(&mut headers, value);
    }
    Ok(headers)
}

/// What the hop-by-hop headers said, collected while the headers are read. They describe
/// the upstream connection, not the response, so they are not kept (only a 101's
/// `Upgrade` is): the response needs no separate stripping pass.
#[derive(Default)]
struct Hop {
    close: bool,
    /// Present: whether the last transfer coding is chunked.
    transfer_encoding: Option<bool>,
    content_length: Option<u64>,
    /// `Connection` values that name further headers to drop (rare).
    listed: Vec<HeaderValue>,
}

impl Hop {
    /// Records a header of this `kind` with `value` (as httparse validated it); returns
    /// whether the header belongs in the response.
    fn note(
        &mut self,
        kind: WireName,
        value: &[u8],
        status: StatusCode,
    ) -> Result<bool, WireError> {
        if kind == WireName::Connection {
            self.close |= has_close(value);
            if elements_of(value).any(names_a_header) {
                let listed = HeaderValue::from_bytes(value)
                    .map_err(|_| WireError::Header("connection".into()))?;
                self.listed.push(listed);
            }
            return Ok(false);
        }
        if kind == WireName::TransferEncoding {
            // The last coding of the last field decides (RFC 9112 6.3), read as hyper reads
            // it: `chunked,` ends with an empty coding, so the body is not chunked.
            let last = elements_of(value).next_back().unwrap_or_default();
            self.transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
            return Ok(false);
        }
        if kind == WireName::ContentLength {
            for part in elements_of(value) {
                let len = decimal(part).ok_or_else(|| {
                    WireError::Header(format!(
                        "content-length {:?}",
                        String::from_utf8_lossy(part)
                    ))
                })?;
                if self.content_length.is_some_and(|f| f != len) {
                    return Err(WireError::Header(
                        "content-length (conflicting values)".into(),
                    ));
                }
                self.content_length = Some(len);
            }
            return Ok(true);
        }
        Ok(match kind {
            WireName::Upgrade => status == StatusCode::SWITCHING_PROTOCOLS,
            WireName::EndToEnd => true,
            _ => false,
        })
    }
}

fn framing(status: StatusCode, version: Version, hop: &Hop, head_request: bool) -> (Framing, bool) {
    let keep_alive = version == Version::HTTP_11 && !hop.close;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (Framing::Upgrade, false);
    }
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return (Framing::Empty, keep_alive);
    }
    match (hop.transfer_encoding, hop.content_length) {
        // Both framings at once (RFC 9112 6.3: "ought to be handled as an error"): decode
        // as chunked, but never reuse the connection, in case the sender meant the length.
        (Some(true), length) => (Framing::Chunked, keep_alive && length.is_none()),
        (Some(false), _) | (None, None) => (Framing::UntilClose, false),
        (None, Some(len)) => (Framing::Length(len), keep_alive),
    }
}

/// Digits only (no sign, no space), without overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_request: bool) -> Result<ParsedResponse, WireError> {
        let mut buf = BytesMut::from(raw);
        parse_response(&mut buf, head_request, false, &mut 0)
    }

    fn fin(raw: &str) -> (usize, ResponseHead) {
        let mut buf = BytesMut::from(raw);
        match parse_response(&mut buf, false, false, &mut 0) {
            Ok(ParsedResponse::Final(head)) => (raw.len() - buf.len(), head),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_head_is_written_in_order() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let out = encode_request(&Method::POST, "/p?q=1", h.iter(), true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Y: z\r\n\r\nhello";
        let (n, h) = fin(raw);
        assert_eq!(&raw[n..], "hello");
        assert_eq!((h.framing, h.reusable), (Framing::Length(5), true));
        assert_eq!(h.headers["x-y"], "z");
        let (_, h) =
            fin("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false));
        assert_eq!(
            h.headers.get("content-length"),
            None,
            "overridden by Transfer-Encoding"
        );
        assert_eq!(h.headers.get("transfer-encoding"), None, "hop-by-hop");
        let (_, h) = fin("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::UntilClose, false));
        let (_, h) = fin("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::UntilClose, false));
        let (_, h) = fin("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Empty, true));
        let (_, h) = fin("HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\nContent-Length: 1\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Length(1), false));
        let mut names: Vec<&str> = h.headers.keys().map(|n| n.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["content-length", "x-kept"],
            "hop-by-hop and Connection-named headers are dropped"
        );
        let (_, h) = fin("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Length(1), false));
        let (_, h) = fin(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        assert_eq!(h.framing, Framing::Upgrade);
        assert_eq!(h.headers["upgrade"], "websocket", "a 101 keeps its Upgrade");
        let (n, h) = fin("HTTP/1.1 200 OK\nContent-Length: 2\n\nok");
        assert_eq!(
            (n, h.framing),
            (35, Framing::Length(2)),
            "bare LF line ends"
        );
        let (_, h) = fin("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(3));
        match parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true) {
            Ok(ParsedResponse::Final(h)) => assert_eq!(h.framing, Framing::Empty),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_head_arriving_byte_by_byte_is_found_once_whole() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut buf = BytesMut::new();
        let mut scanned = 0;
        for (i, &b) in raw.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            match parse_response(&mut buf, false, false, &mut scanned) {
                Ok(ParsedResponse::Partial) => assert!(i < raw.len() - 3, "missed the end at {i}"),
                Ok(ParsedResponse::Final(head)) => {
                    assert_eq!(i, raw.len() - 3);
                    assert_eq!(head.framing, Framing::Length(2));
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
        panic!("never complete");
    }

    #[test]
    fn bad_heads_are_errors_and_interim_ones_are_skipped() {
        assert!(matches!(
            parse("HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok(ParsedResponse::Interim)
        ));
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(ParsedResponse::Partial)
        ));
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", false).is_err());
        assert!(parse("garbage\r\n\r\n", false).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&huge, false), Err(WireError::TooLarge)));
    }

    fn raw_lines(raw: &str, head_request: bool) -> Option<String> {
        let mut buf = BytesMut::from(raw);
        match parse_response(&mut buf, head_request, true, &mut 0) {
            Ok(ParsedResponse::Final(head)) => {
                let mut map = HeaderMap::new();
                let lines = head.raw.map(|r| {
                    r.into_map(&mut map);
                    map.iter()
                        .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                        .collect::<Vec<_>>()
                        .join(",")
                });
                assert!(lines.is_none() || head.headers.is_empty());
                lines
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn relayed_lines_keep_end_to_end_headers_only() {
        let raw = "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\nDate: d\r\n\r\nhello";
        assert_eq!(
            raw_lines(raw, false).as_deref(),
            Some("server=up,x-a=1,date=d")
        );
        // A HEAD response keeps its length: it is the length the GET would have.
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        assert_eq!(
            raw_lines(head, true).as_deref(),
            Some("content-length=1000")
        );
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x\r\nX-B: 2\r\n\r\n";
        assert_eq!(raw_lines(chunked, false).as_deref(), Some("x-b=2"));
        // A Connection header naming headers to drop, and a 101, come as a map.
        let listed =
            "HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: s\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(raw_lines(listed, false), None);
        let switching =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(raw_lines(switching, false), None);
    }
}
