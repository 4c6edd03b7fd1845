//! Reading a request head: which requests `http1` serves itself, and which it hands over.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::body::ClientBody;

/// Heads larger than this go to hyper, which answers 431 (nginx's default limit is 32 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// hyper's default; more headers go to hyper, which answers 431.
const MAX_HEADERS: usize = 100;

// Returned once per request and taken apart at once: boxing the request would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet; nothing consumed.
    Partial,
    /// A plain request; `close` when the client asked for the connection to end after it.
    Plain {
        req: Request<ClientBody>,
        close: bool,
    },
    /// Anything else: the head, consumed from the buffer, to be handed over with the rest.
    HandOff(Bytes),
}

/// Parses the head at the start of `buf`. `scanned` remembers how far earlier calls
/// looked for its end, so a head arriving byte by byte costs linear time.
///
/// Plain means: HTTP/1.1, an origin-form target, no body (no Transfer-Encoding, no
/// Content-Length other than 0), no `Expect`, no `Upgrade`. Everything else, and every
/// head httparse or the `http` types refuse, is handed over untouched, so hyper gives
/// its usual answer (400, 431, 100-continue, h2c, upgrades, bodies).
pub fn parse(buf: &mut BytesMut, scanned: &mut usize) -> Parsed {
    let found = head_end(buf, *scanned);
    *scanned = buf.len().saturating_sub(2);
    let end = match found {
        Some(end) if end <= MAX_HEAD => end,
        Some(_) => return Parsed::HandOff(Bytes::new()),
        None if buf.len() >= MAX_HEAD => return Parsed::HandOff(Bytes::new()),
        None => return Parsed::Partial,
    };
    *scanned = 0;
    // Frozen before parsing, so header values and the target can point into it (no
    // copy, as in hyper).
    let head = buf.split_to(end).freeze();
    match plain(&head) {
        Some((req, close)) => Parsed::Plain { req, close },
        None => Parsed::HandOff(head),
    }
}

fn plain(head: &Bytes) -> Option<(Request<ClientBody>, bool)> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(head, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return None,
    }
    let path = parsed.path?;
    if parsed.version != Some(1) || !path.starts_with('/') {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri = Uri::from_maybe_shared(head.slice_ref(path.as_bytes())).ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value)).ok()?;
        match name {
            header::CONTENT_LENGTH if h.value != b"0" => return None,
            header::TRANSFER_ENCODING | header::EXPECT | header::UPGRADE => return None,
            header::CONNECTION => close |= has_close(h.value),
            _ => {}
        }
        headers.append(name, value);
    }
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some((req, close))
}

/// Whether a `Connection` value has the `close` option (requests, responses written here,
/// and upstream responses alike).
pub fn has_close(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|e| e.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Where the head ends: just past the first empty line (CRLF or, as httparse also
/// accepts, a bare LF). memchr, because a byte-at-a-time search over every head was
/// 4 % of the instructions per proxied request (a request head and a response head).
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    memchr::memchr_iter(b'\n', &buf[from..]).find_map(|at| {
        let next = from + at + 1;
        match buf.get(next..) {
            Some([b'\n', ..]) => Some(next + 1),
            Some([b'\r', b'\n', ..]) => Some(next + 2),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> (Parsed, usize) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse(&mut buf, &mut 0);
        (parsed, buf.len())
    }

    fn is_plain(raw: &[u8]) -> bool {
        matches!(parse_all(raw).0, Parsed::Plain { .. })
    }

    #[test]
    fn plain_requests_are_parsed_without_losing_the_next_one() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
        let (parsed, left) = parse_all(raw);
        let Parsed::Plain { req, close } = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(left, b"GET /next".len());
        assert!(!close);
        assert_eq!(
            (req.method(), req.uri().path(), req.uri().query()),
            (&Method::GET, "/a", Some("b=1"))
        );
        assert_eq!(req.headers().get_all("x-two").iter().count(), 2);
        assert!(is_plain(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
        assert!(is_plain(b"GET / HTTP/1.1\nHost: x\n\n"));
        let (parsed, _) = parse_all(b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n");
        assert!(matches!(parsed, Parsed::Plain { close: true, .. }));
    }

    #[test]
    fn everything_else_is_handed_over_whole() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n",
        ] {
            let (parsed, left) = parse_all(raw);
            let Parsed::HandOff(head) = parsed else {
                panic!("{parsed:?} for {:?}", String::from_utf8_lossy(raw))
            };
            assert_eq!(head.len() + left, raw.len());
            assert_eq!(&head[..], &raw[..head.len()]);
        }
    }

    #[test]
    fn head_ends_are_found_from_where_the_last_search_stopped() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0), None);
        // A search resumed two bytes before where the last one ended.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 21), Some(24));
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_handed_over() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        let mut scanned = 0;
        assert!(matches!(parse(&mut buf, &mut scanned), Parsed::Partial));
        buf.extend_from_slice(b"\r");
        assert!(matches!(parse(&mut buf, &mut scanned), Parsed::Partial));
        buf.extend_from_slice(b"\n");
        assert!(matches!(
            parse(&mut buf, &mut scanned),
            Parsed::Plain { .. }
        ));
        let mut big = BytesMut::from(&b"GET / HTTP/1.1\r\nX: "[..]);
        big.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert!(matches!(parse(&mut big, &mut 0), Parsed::HandOff(h) if h.is_empty()));
        assert_eq!(big.len(), MAX_HEAD + 19);
    }
}
