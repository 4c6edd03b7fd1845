//! The parts of HTTP/1.1 framing that requests and responses share, for the server side
//! (`h1`) and the upstream side (`upstream::wire`) alike: where a head ends and how large it
//! may be, what a header name says about the connection, and `Connection` options.

/// Heads larger than this are refused: a request's with 431 (nginx's default limit is
/// 32 KiB), an upstream response's with 502.
pub const MAX_HEAD: usize = 64 * 1024;

/// Where the head ends: just past the first empty line (CRLF or, as httparse also
/// accepts, a bare LF). memchr: every request head and every response head is searched, so a
/// byte-at-a-time loop would be on the hot path twice per proxied request.
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

/// Whether a `Connection` value has the `close` option (requests, responses written here,
/// and upstream responses alike).
pub fn has_close(value: &[u8]) -> bool {
    has_token(value, b"close")
}

/// Whether the comma-separated list `value` has `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|e| e.trim_ascii().eq_ignore_ascii_case(token))
}

/// What a header name, in any case as it came off the wire, says about the connection.
/// The hop-by-hop kinds are the headers that describe one connection, not the message
/// (RFC 9110 7.6.1), plus `Proxy-Connection`, which old clients still send: the one list of
/// them, for requests and responses alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireName {
    Connection,
    TransferEncoding,
    ContentLength,
    Upgrade,
    /// Another of the fixed hop-by-hop headers.
    OtherHopByHop,
    EndToEnd,
}

impl WireName {
    pub fn is_hop_by_hop(self) -> bool {
        !matches!(self, WireName::ContentLength | WireName::EndToEnd)
    }
}

/// Classifies `name` by its length first, so most headers are compared with one known
/// name at most, not with each hop-by-hop name (this runs for every header of every
/// response).
pub fn classify(name: &[u8]) -> WireName {
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        10 if is(b"connection") => WireName::Connection,
        10 if is(b"keep-alive") => WireName::OtherHopByHop,
        17 if is(b"transfer-encoding") => WireName::TransferEncoding,
        14 if is(b"content-length") => WireName::ContentLength,
        7 if is(b"upgrade") => WireName::Upgrade,
        7 if is(b"trailer") => WireName::OtherHopByHop,
        2 if is(b"te") => WireName::OtherHopByHop,
        16 if is(b"proxy-connection") => WireName::OtherHopByHop,
        // RFC 9113 3.2.1 (RFC 7540): it only means something beside `Upgrade: h2c`, which
        // is never passed on.
        14 if is(b"http2-settings") => WireName::OtherHopByHop,
        _ => WireName::EndToEnd,
    }
}

/// Whether a `Connection` element names a header to drop, rather than being one of the
/// connection options (`close`, `keep-alive`, `upgrade`) whose headers are hop-by-hop
/// anyway.
pub fn names_a_header(element: &[u8]) -> bool {
    ![&b""[..], b"close", b"keep-alive", b"upgrade"]
        .iter()
        .any(|t| element.eq_ignore_ascii_case(t))
}

/// The same for a value as it came off the wire.
pub fn elements_of(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_are_found_from_where_the_last_search_stopped() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r", 0), None);
        // A search resumed two bytes before where the last one ended.
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 21), Some(24));
    }

    #[test]
    fn classify_knows_exactly_the_fixed_hop_by_hop_names() {
        let fixed = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
        ];
        for name in fixed {
            let upper = name.to_ascii_uppercase();
            assert!(classify(upper.as_bytes()).is_hop_by_hop(), "{name}");
        }
        assert!(!classify(b"content-length").is_hop_by_hop());
        for name in [
            "content-type",
            "date",
            "server",
            "x-connection",
            "tee",
            "keep-alive2",
        ] {
            assert_eq!(classify(name.as_bytes()), WireName::EndToEnd, "{name}");
        }
        assert_eq!(classify(b"Content-Length"), WireName::ContentLength);
    }
}
