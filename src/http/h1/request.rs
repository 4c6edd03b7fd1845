//! Reading a request head: which requests `h1` serves itself, and which it hands over.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::http::client_body::ClientBody;
use crate::http::head::{has_close, has_token, head_end, MAX_HEAD};

/// hyper's default; more headers go to hyper, which answers 431.
const MAX_HEADERS: usize = 100;

// Returned once per request and taken apart at once: boxing the request would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ParsedRequest {
    /// Not a whole head yet; nothing consumed.
    Partial,
    /// A plain request; `close` when the client asked for the connection to end after it.
    Plain {
        req: Request<ClientBody>,
        close: bool,
    },
    /// Anything else: the head, consumed from the buffer, to be handed over with the rest.
    HandOff { head: Bytes, to: Hyper },
}

/// How much of a connection hyper takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hyper {
    /// One HTTP/1.1 request (a body, `Expect`, an absolute-form target), of `len` bytes
    /// or ending where its chunked body ends: hyper is given no byte beyond it, and the
    /// connection comes back, so every later head is read, scanned and timed here (a
    /// head pipelined behind a body is no exception).
    OneRequest(MessageLength),
    /// The rest of the connection: h2c, a WebSocket upgrade, HTTP/1.0, and heads hyper
    /// will refuse (it closes after its 400 or 431).
    Rest,
}

/// How long a request handed to hyper for itself is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageLength {
    /// The head and a body of known length, in bytes.
    Bytes(u64),
    /// The head (in bytes), then a chunked body.
    Chunked { head: u64 },
}

/// Parses the head at the start of `buf`. `scanned` remembers how far earlier calls
/// looked for its end, so a head arriving byte by byte costs linear time.
///
/// Plain means: HTTP/1.1, an origin-form target, no body or a Content-Length body that is
/// already in `buf` (no Transfer-Encoding), no `Expect`, no `Upgrade`. Everything else, and every
/// head httparse or the `http` types refuse, is handed over untouched, so hyper gives
/// its usual answer (400, 431, 100-continue, h2c, upgrades, bodies).
pub fn parse(buf: &mut BytesMut, scanned: &mut usize) -> ParsedRequest {
    let found = head_end(buf, *scanned);
    *scanned = buf.len().saturating_sub(2);
    let end = match found {
        Some(end) if end <= MAX_HEAD => end,
        Some(_) => return too_large(),
        None if buf.len() >= MAX_HEAD => return too_large(),
        None => return ParsedRequest::Partial,
    };
    *scanned = 0;
    // Frozen before parsing, so header values and the target can point into it (no
    // copy, as in hyper).
    let head = buf.split_to(end).freeze();
    match plain(&head) {
        Ok((req, close, 0)) => ParsedRequest::Plain { req, close },
        Ok((mut req, close, len)) => match usize::try_from(len) {
            // The body is here already (a small body comes in the head's packet): it is
            // the request's, and the next byte starts the next request.
            Ok(len) if len <= buf.len() => {
                *req.body_mut() = ClientBody::Full(Some(buf.split_to(len).freeze()));
                ParsedRequest::Plain { req, close }
            }
            // Still on its way: hyper streams it (and answers early if the app does).
            _ => {
                let total = (head.len() as u64).saturating_add(len);
                ParsedRequest::HandOff {
                    head,
                    to: Hyper::OneRequest(MessageLength::Bytes(total)),
                }
            }
        },
        Err(to) => ParsedRequest::HandOff { head, to },
    }
}

/// Too large to be a head: hyper answers 431.
fn too_large() -> ParsedRequest {
    ParsedRequest::HandOff {
        head: Bytes::new(),
        to: Hyper::Rest,
    }
}

/// The request, whether it asked to close, and the length of its body (a Content-Length;
/// anything else that needs hyper is `Err`).
fn plain(head: &Bytes) -> Result<(Request<ClientBody>, bool, u64), Hyper> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(head, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len == head.len() => {}
        _ => return Err(Hyper::Rest),
    }
    let (Some(path), Some(method), Some(minor)) = (parsed.path, parsed.method, parsed.version)
    else {
        return Err(Hyper::Rest);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Hyper::Rest)?;
    let mut body = Body {
        // HTTP/1.0 (its keep-alive rules are hyper's) and targets other than origin-form
        // (absolute-form, `*`, CONNECT's authority) are read by hyper, one at a time.
        hand_over: minor != 1 || !path.starts_with('/'),
        http10: minor == 0,
        ..Body::default()
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Hyper::Rest)?;
        let value =
            HeaderValue::from_maybe_shared(head.slice_ref(h.value)).map_err(|_| Hyper::Rest)?;
        match name {
            // A WebSocket upgrade makes the connection a tunnel; other upgrade tokens are
            // dropped by the proxy, so the request is an ordinary one.
            header::UPGRADE if has_token(h.value, b"websocket") => return Err(Hyper::Rest),
            header::CONTENT_LENGTH => {
                // A repeated length (the same value, or `length` refuses it) is kept once,
                // as hyper keeps it.
                let repeated = body.length.is_some();
                body.length(h.value)?;
                if repeated {
                    continue;
                }
            }
            header::TRANSFER_ENCODING => body.coding(h.value),
            header::EXPECT | header::UPGRADE => body.hand_over = true,
            header::CONNECTION => close |= has_close(h.value),
            _ => {}
        }
        headers.append(name, value);
    }
    let body_len = match body.message_length(head.len() as u64)? {
        Some(MessageLength::Bytes(_)) if !body.hand_over => body.length.unwrap_or(0),
        Some(length) => return Err(Hyper::OneRequest(length)),
        None => 0,
    };
    let uri = Uri::from_maybe_shared(head.slice_ref(path.as_bytes())).map_err(|_| Hyper::Rest)?;
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Ok((req, close, body_len))
}

/// What a head says about its body, as far as the choice of server goes.
#[derive(Default)]
struct Body {
    length: Option<u64>,
    /// Present: whether the last coding is chunked.
    chunked: Option<bool>,
    /// Something else hyper must see (`Expect`, an `Upgrade` token the proxy drops,
    /// HTTP/1.0, a target that is not origin-form).
    hand_over: bool,
    /// HTTP/1.0, which has no chunked coding (hyper answers 400 and closes).
    http10: bool,
}

impl Body {
    /// A `Content-Length`: digits only, the same value each time, or hyper's 400.
    fn length(&mut self, value: &[u8]) -> Result<(), Hyper> {
        let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
        let len = std::str::from_utf8(value).ok().filter(|_| digits);
        let len: u64 = len.and_then(|v| v.parse().ok()).ok_or(Hyper::Rest)?;
        match self.length.replace(len) {
            Some(earlier) if earlier != len => Err(Hyper::Rest),
            _ => Ok(()),
        }
    }

    fn coding(&mut self, value: &[u8]) {
        let last = value
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .next_back();
        self.chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
    }

    /// `None`: no body and nothing else for hyper. Both framings at once, or a coding
    /// hyper refuses, go to hyper for good (its 400, or the smuggling scan's, ends the
    /// connection).
    fn message_length(&self, head: u64) -> Result<Option<MessageLength>, Hyper> {
        match (self.chunked, self.length) {
            (Some(_), _) if self.http10 => Err(Hyper::Rest),
            (Some(_), Some(_)) | (Some(false), None) => Err(Hyper::Rest),
            (Some(true), None) => Ok(Some(MessageLength::Chunked { head })),
            (None, Some(len)) if len > 0 || self.hand_over => {
                let total = head.checked_add(len).ok_or(Hyper::Rest)?;
                Ok(Some(MessageLength::Bytes(total)))
            }
            (None, _) if self.hand_over => Ok(Some(MessageLength::Bytes(head))),
            (None, _) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> (ParsedRequest, usize) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse(&mut buf, &mut 0);
        (parsed, buf.len())
    }

    fn is_plain(raw: &[u8]) -> bool {
        matches!(parse_all(raw).0, ParsedRequest::Plain { .. })
    }

    #[test]
    fn plain_requests_are_parsed_without_losing_the_next_one() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
        let (parsed, left) = parse_all(raw);
        let ParsedRequest::Plain { req, close } = parsed else {
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
        assert!(matches!(parsed, ParsedRequest::Plain { close: true, .. }));
    }

    #[test]
    fn everything_else_is_handed_over_whole() {
        use MessageLength::{Bytes as Len, Chunked};
        let one = |len| Hyper::OneRequest(len);
        for (raw, to) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhell"[..],
                one(Len(43)),
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n",
                one(Chunked { head: 53 }),
            ),
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
                one(Len(59)),
            ),
            (
                b"GET /h2c HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
                one(Len(56)),
            ),
            (
                b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                Hyper::Rest,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", one(Len(18))),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
                one(Len(40)),
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Hyper::Rest,
            ),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", one(Len(26))),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", one(Len(22))),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Hyper::Rest),
            (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", Hyper::Rest),
            (b"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", Hyper::Rest),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Hyper::Rest,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Hyper::Rest,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                Hyper::Rest,
            ),
        ] {
            let (parsed, left) = parse_all(raw);
            let ParsedRequest::HandOff { head, to: got } = parsed else {
                panic!("{parsed:?} for {:?}", String::from_utf8_lossy(raw))
            };
            assert_eq!(head.len() + left, raw.len());
            assert_eq!(&head[..], &raw[..head.len()]);
            assert_eq!(got, to, "{:?}", String::from_utf8_lossy(raw));
        }
        assert!(is_plain(b"GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n"));
    }

    #[test]
    fn a_body_already_read_stays_and_the_next_request_is_kept() {
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 005\r\n\r\nhelloGET /next";
        let (parsed, left) = parse_all(raw);
        let ParsedRequest::Plain { req, close: false } = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(left, b"GET /next".len());
        let ClientBody::Full(Some(body)) = req.body() else {
            panic!("{:?}", req.body())
        };
        assert_eq!(&body[..], b"hello");
        // With Expect, HTTP/1.0 or a chunked body, hyper reads it even if it is all here.
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nx"[..],
            b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        ] {
            assert!(matches!(
                parse_all(raw).0,
                ParsedRequest::HandOff {
                    to: Hyper::OneRequest(_),
                    ..
                }
            ));
        }
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_handed_over() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        let mut scanned = 0;
        assert!(matches!(
            parse(&mut buf, &mut scanned),
            ParsedRequest::Partial
        ));
        buf.extend_from_slice(b"\r");
        assert!(matches!(
            parse(&mut buf, &mut scanned),
            ParsedRequest::Partial
        ));
        buf.extend_from_slice(b"\n");
        assert!(matches!(
            parse(&mut buf, &mut scanned),
            ParsedRequest::Plain { .. }
        ));
        let mut big = BytesMut::from(&b"GET / HTTP/1.1\r\nX: "[..]);
        big.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert!(matches!(
            parse(&mut big, &mut 0),
            ParsedRequest::HandOff { head, to: Hyper::Rest } if head.is_empty()
        ));
        assert_eq!(big.len(), MAX_HEAD + 19);
    }
}
