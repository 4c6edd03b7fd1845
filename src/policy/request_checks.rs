//! What every request must pass before it is routed (SPEC "Request handling", the check
//! before routing): the method, the path, and the Host. One place, for routed, static and
//! fallback requests alike, and for both servers (`h1` and hyper).

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use crate::http::head::elements_of;
use crate::policy::errors::RequestError;

/// Checks `req`, and gives an absolute-form target's authority to `Host` (RFC 9112 3.2.2:
/// the target's authority wins, so routing and the upstream see the same host).
pub fn check<B>(req: &mut Request<B>) -> Result<(), RequestError> {
    // CONNECT would open a tunnel to wherever the client names, and TRACE echoes the
    // request (credentials included) back: neither belongs behind a load balancer.
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        return Err(RequestError::MethodNotProxied);
    }
    check_path(req.uri().path())?;
    check_coding(req.headers())?;
    check_host(req)
}

/// RFC 9112 6.1: a transfer coding other than `chunked` (hyper accepts `gzip, chunked`
/// and decodes only the chunking) would reach the app as plain data: 501, as nginx does.
fn check_coding(headers: &http::HeaderMap) -> Result<(), RequestError> {
    let codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match codings
        .flat_map(|v| elements_of(v.as_bytes()))
        .all(|c| c.eq_ignore_ascii_case(b"chunked"))
    {
        true => Ok(()),
        false => Err(RequestError::UnknownCoding),
    }
}

/// A dot segment would let `/api/../internal` match the `/api/` route and then be
/// normalised by the app into a path no route meant to expose. Nothing legitimate sends
/// one (clients resolve them), so any segment that the app could read as `.` or `..` is
/// refused (404): literal or percent-encoded, with `;` parameters (`..;`, which Tomcat
/// and Spring strip), and where `%2F` or `%5C` would end the segment (`..%2f`). A NUL
/// or a raw backslash is malformed (400). Allocation-free: it runs on every request.
pub fn check_path(path: &str) -> Result<(), RequestError> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') || has_encoded(bytes, b"%00") {
        return Err(RequestError::BadPath);
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let (segment, after) = split_segment(rest);
        if is_dot_segment(segment) {
            return Err(RequestError::NotFound);
        }
        rest = after;
    }
    Ok(())
}

fn has_encoded(bytes: &[u8], escape: &[u8; 3]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1..].eq_ignore_ascii_case(&escape[1..]))
}

/// The first segment of `path` and what follows its separator. A separator is `/`, or
/// an encoded slash or backslash, which an app may decode into one.
fn split_segment(path: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'/' {
            return (&path[..i], &path[i + 1..]);
        }
        if path[i] == b'%' && i + 3 <= path.len() {
            let code = &path[i + 1..i + 3];
            if code.eq_ignore_ascii_case(b"2f") || code.eq_ignore_ascii_case(b"5c") {
                return (&path[..i], &path[i + 3..]);
            }
        }
        i += 1;
    }
    (path, &[])
}

/// `.` or `..`, each dot literal or `%2e`, optionally followed by `;` parameters.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut dots = 0;
    let mut rest = segment;
    while !rest.is_empty() {
        if rest[0] == b';' || starts_with_escape(rest, b"%3b") {
            // Parameters (`..;x`, also encoded) follow the name.
            break;
        }
        if let Some(after) = rest.strip_prefix(b".") {
            rest = after;
        } else if let Some(len) = encoded_dot(rest) {
            rest = &rest[len..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

fn starts_with_escape(bytes: &[u8], escape: &[u8]) -> bool {
    bytes.len() >= escape.len() && bytes[..escape.len()].eq_ignore_ascii_case(escape)
}

/// `%2e`, or an overlong UTF-8 spelling of `.` that lax decoders accept (`%c0%ae`,
/// `%e0%80%ae`): how many bytes it takes.
fn encoded_dot(bytes: &[u8]) -> Option<usize> {
    [&b"%2e"[..], b"%c0%ae", b"%e0%80%ae"]
        .iter()
        .find(|e| starts_with_escape(bytes, e))
        .map(|e| e.len())
}

/// RFC 9112 3.2: an HTTP/1.1 request has exactly one valid `Host` (an HTTP/1.0 one may
/// have none); an absolute-form target's authority replaces it. RFC 9113 8.3.1: over
/// HTTP/2, a `host` that disagrees with `:authority` is malformed.
fn check_host<B>(req: &mut Request<B>) -> Result<(), RequestError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::BadHost);
    }
    if host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Err(RequestError::BadHost);
    }
    let authority = req.uri().authority().map(|a| a.as_str());
    match req.version() {
        Version::HTTP_2 => match (host, authority) {
            (Some(h), Some(a)) if !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) => {
                Err(RequestError::BadHost)
            }
            _ => Ok(()),
        },
        version => {
            if host.is_none() && version != Version::HTTP_10 && version != Version::HTTP_09 {
                return Err(RequestError::BadHost);
            }
            if let Some(authority) = authority {
                if !valid_host(authority.as_bytes()) {
                    return Err(RequestError::BadHost);
                }
                let value = HeaderValue::from_str(authority).map_err(|_| RequestError::BadHost)?;
                req.headers_mut().insert(header::HOST, value);
            }
            Ok(())
        }
    }
}

/// `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2): a reg-name of unreserved,
/// sub-delim and percent-encoded bytes without empty labels (`a..b`, as nginx refuses),
/// or a bracketed IP literal; no userinfo; the port all digits.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(close) => {
                let literal = &value[1..close];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
                if !ok {
                    return false;
                }
                (None, &value[close + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (Some(&value[..colon]), &value[colon..]),
            None => (Some(value), &value[value.len()..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok && host.is_none_or(valid_reg_name)
}

/// One pass, one table lookup per byte: every request's Host goes through here.
fn valid_reg_name(name: &[u8]) -> bool {
    // A leading dot is an empty first label, as `..` is an empty one inside.
    let mut previous = b'.';
    for &b in name {
        if !REG_NAME[usize::from(b)] || (b == b'.' && previous == b'.') {
            return false;
        }
        previous = b;
    }
    !name.is_empty()
}

/// The bytes of a reg-name: unreserved, sub-delims and the `%` of pct-encoded.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as written in RFC terms, byte class by byte class, against the table.
    #[test]
    fn the_reg_name_table_agrees_with_the_rule() {
        let rule = |name: &[u8]| {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            !name.is_empty()
                && name.iter().all(|&b| allowed(b))
                && !name.windows(2).any(|w| w == b"..")
                && name[0] != b'.'
        };
        let alphabet: Vec<u8> = (0..=255u8)
            .filter(|b| b % 7 == 0 || b"a.-%:@ ".contains(b))
            .collect();
        for a in &alphabet {
            for b in &alphabet {
                for c in &alphabet {
                    for name in [&[*a][..], &[*a, *b][..], &[*a, *b, *c][..]] {
                        assert_eq!(valid_reg_name(name), rule(name), "{name:?}");
                    }
                }
            }
        }
        assert!(!valid_reg_name(b""));
    }

    #[test]
    fn dot_segments_in_every_spelling() {
        for p in [
            "/a/../b",
            "/a/./b",
            "/..",
            "/x/%2e%2E",
            "/%2e/a",
            "/.%2e/a",
            "/a/..%2fb",
            "/a/..%2Fb",
            "/a/..%5cb",
            "/a/..;/b",
            "/a/.;x=1/b",
            "/a/%2e%2e;/b",
            "/a%2f..%2fb",
            "/a/..%3b/b",
            "/a/%c0%ae%c0%ae/b",
            "/a/%e0%80%ae./b",
        ] {
            assert!(matches!(check_path(p), Err(RequestError::NotFound)), "{p}");
        }
        for p in ["/a\\b", "/a/..%00/b", "/a%00"] {
            assert!(matches!(check_path(p), Err(RequestError::BadPath)), "{p}");
        }
        for p in [
            "/",
            "*",
            "/a.b/c",
            "/...",
            "/.well-known/x",
            "/a/%2e%2e%2e",
            "/small.bin",
            "/%2f",
            "/api/projects/group%2Fproject",
            "/a;b/c",
            "/a/..b",
            "/a/b..",
            "/a%2",
        ] {
            assert!(check_path(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn host_syntax() {
        for h in [
            "a",
            "a.example",
            "a.example.",
            "a.example:8080",
            "a.example:",
            "[::1]",
            "[::1]:80",
            "127.0.0.1:80",
            "xn--bcher-kva.example",
        ] {
            assert!(valid_host(h.as_bytes()), "{h}");
        }
        for h in [
            "", "a/b", "a..b", ".a", "u@a", "a:80x", "a:8:8", "[::1", "[]", "[::1]x", "a b",
            "a\\b", ":80",
        ] {
            assert!(!valid_host(h.as_bytes()), "{h}");
        }
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules_by_version() {
        let bad = |v, uri, hosts: &[&str]| check(&mut req(v, uri, hosts)).is_err();
        assert!(bad(Version::HTTP_11, "/", &[]));
        assert!(bad(Version::HTTP_11, "/", &["a", "b"]));
        assert!(bad(Version::HTTP_11, "/", &["a", "a"]));
        assert!(!bad(Version::HTTP_11, "/", &["a"]));
        assert!(!bad(Version::HTTP_10, "/", &[]));
        assert!(bad(Version::HTTP_2, "http://a/", &["b"]));
        assert!(!bad(Version::HTTP_2, "http://a/", &["A"]));
        assert!(!bad(Version::HTTP_2, "http://a/", &[]));
        let mut r = req(Version::HTTP_11, "http://b.example:81/x", &["a"]);
        check(&mut r).unwrap();
        assert_eq!(r.headers()["host"], "b.example:81");
        let mut r = Request::builder()
            .method("TRACE")
            .uri("/")
            .header("host", "a")
            .body(())
            .unwrap();
        assert!(matches!(check(&mut r), Err(RequestError::MethodNotProxied)));
    }
}
