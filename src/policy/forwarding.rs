//! The forwarded headers at the proxy boundary: the `X-Forwarded-*` / `X-Real-IP` set, believing a peer's forwarded headers only when the
//! peer is one of `trusted_proxies`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::http::hop_by_hop::is_hop_by_hop;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The `X-Forwarded-For/Proto/Host` and `X-Real-IP` a request from `peer` goes upstream
/// with, and which of the client's own headers pass. Computed without touching the
/// request's headers: they are applied while the head is written (`Forwarding::headers`),
/// so the request's header map is never rewritten.
pub struct Forwarding {
    peer_trusted: bool,
    xff: HeaderValue,
    real_ip: HeaderValue,
    /// None: the trusted peer's own value passes.
    proto: Option<HeaderValue>,
    /// None: the trusted peer's own value passes, or there is no Host to copy.
    host: Option<HeaderValue>,
}

/// Computes the forwarded headers for a request arriving from `peer`.
///
/// `peer_value` is the peer's address already rendered as a header value (once per
/// connection, not per request).
pub fn forwarding(
    headers: &HeaderMap,
    peer: IpAddr,
    peer_value: &HeaderValue,
    trusted: &[IpNet],
) -> Forwarding {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer_trusted = is_trusted(&peer);
    let chain = peer_trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    let real_ip = match &chain {
        Some(chain) => real_ip(chain, peer, &is_trusted),
        None => peer_value.clone(),
    };
    let xff = match chain {
        Some(chain) => append(&chain, peer_value),
        None => peer_value.clone(),
    };
    let keep = |name: &HeaderName| peer_trusted && headers.contains_key(name);
    let proto = (!keep(&X_FORWARDED_PROTO)).then(|| HeaderValue::from_static("http"));
    let host = match keep(&X_FORWARDED_HOST) {
        true => None,
        false => headers.get(header::HOST).cloned(),
    };
    Forwarding {
        peer_trusted,
        xff,
        real_ip,
        proto,
        host,
    }
}

impl Forwarding {
    /// Whether a header the client sent goes upstream unchanged: not hop-by-hop, not one
    /// switchyard sets, and from an untrusted peer nothing that speaks for a proxy.
    pub fn passes(&self, name: &HeaderName) -> bool {
        if is_hop_by_hop(name) || *name == X_FORWARDED_FOR || *name == X_REAL_IP {
            return false;
        }
        // `Expect: 100-continue` was answered on this hop (hyper sends the 100 when the
        // body is first read), as nginx does; the app must not answer it again.
        if *name == header::EXPECT {
            return false;
        }
        if reads_as_forwarding(name.as_str()) {
            return false;
        }
        // An untrusted client must not be able to speak for the load balancer in any syntax.
        self.peer_trusted
            || !(*name == X_FORWARDED_PROTO || *name == X_FORWARDED_HOST || *name == FORWARDED)
    }

    /// The headers switchyard adds.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        [
            Some((&X_FORWARDED_FOR, &self.xff)),
            Some((&X_REAL_IP, &self.real_ip)),
            self.proto.as_ref().map(|v| (&X_FORWARDED_PROTO, v)),
            self.host.as_ref().map(|v| (&X_FORWARDED_HOST, v)),
        ]
        .into_iter()
        .flatten()
    }

    /// The request's headers as they go upstream: the client's that pass, then these.
    pub fn apply<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> {
        headers
            .iter()
            .filter(|(name, _)| self.passes(name))
            .chain(self.headers())
    }
}

/// Whether an underscore name reads as a forwarding header once `_` is taken for `-`, as
/// CGI and WSGI servers do (`X_Forwarded_For` and `X-Forwarded-For` both become
/// `HTTP_X_FORWARDED_FOR`, and the client's spelling may come first). nginx drops every
/// underscore name by default; dropping only these keeps apps that use other underscore
/// headers working.
fn reads_as_forwarding(name: &str) -> bool {
    if !name.contains('_') {
        return false;
    }
    let dashed = |a: u8, b: u8| a == b || (a == b'_' && b == b'-');
    let is = |known: &str| {
        name.len() == known.len() && name.bytes().zip(known.bytes()).all(|(a, b)| dashed(a, b))
    };
    let starts = |known: &str| {
        name.len() >= known.len() && name.bytes().zip(known.bytes()).all(|(a, b)| dashed(a, b))
    };
    is("x-real-ip") || starts("x-forwarded-")
}

/// RFC 9113 8.2.3: an HTTP/2 client may split `cookie` into several fields; an HTTP/1.1
/// upstream expects one, joined with `; `.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// All values of a header joined as one comma-separated list, or None when absent.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.to_str().ok()?.to_owned();
    values.try_fold(first, |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v.to_str().ok()?);
        Some(acc)
    })
}

fn append(chain: &str, peer: &HeaderValue) -> HeaderValue {
    let mut bytes = Vec::with_capacity(chain.len() + 2 + peer.len());
    bytes.extend_from_slice(chain.as_bytes());
    bytes.extend_from_slice(b", ");
    bytes.extend_from_slice(peer.as_bytes());
    HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| peer.clone())
}

/// The right-most address of `chain + peer` that is not a trusted proxy (nginx's
/// `real_ip_recursive on`). An entry that is not an IP address ends the walk: nothing to
/// its left can be believed.
fn real_ip(chain: &str, peer: IpAddr, is_trusted: &dyn Fn(&IpAddr) -> bool) -> HeaderValue {
    let found = walk(chain, peer, is_trusted);
    HeaderValue::from_str(&found.to_string()).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn walk(chain: &str, peer: IpAddr, is_trusted: &dyn Fn(&IpAddr) -> bool) -> IpAddr {
    let mut found = peer;
    for entry in chain.rsplit(',') {
        if !is_trusted(&found) {
            break;
        }
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => found = ip,
            Err(_) => break,
        }
    }
    found
}

/// The client's address as `X-Real-IP` would say it, for the access log: the peer, or
/// behind trusted proxies the right-most untrusted address of `X-Forwarded-For`.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    match joined(headers, &X_FORWARDED_FOR) {
        Some(chain) => walk(&chain, peer, &is_trusted),
        None => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::hop_by_hop::strip_connection_listed;

    fn run(peer: &str, xff: Option<&str>, trusted: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example.com"));
        if let Some(x) = xff {
            h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_str(x).unwrap());
        }
        outgoing(h, peer, trusted)
    }

    /// The request's headers as the proxy writes them upstream.
    fn outgoing(mut h: HeaderMap, peer: &str, trusted: &[&str]) -> HeaderMap {
        strip_connection_listed(&mut h);
        let peer: IpAddr = peer.parse().unwrap();
        let nets: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let pv = HeaderValue::from_str(&peer.to_string()).unwrap();
        let fwd = forwarding(&h, peer, &pv, &nets);
        let mut out = HeaderMap::new();
        for (name, value) in fwd.apply(&h) {
            out.append(name.clone(), value.clone());
        }
        out
    }

    #[test]
    fn untrusted_peer_replaces_chain() {
        let h = run("203.0.113.9", Some("1.2.3.4"), &["10.0.0.0/8"]);
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9");
        assert_eq!(h[&X_REAL_IP], "203.0.113.9");
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "app.example.com");
        assert_eq!(h[header::HOST], "app.example.com");
    }

    #[test]
    fn trusted_peer_appends_and_real_ip_skips_trusted() {
        let h = run("10.0.1.5", Some("198.51.100.7, 10.0.2.2"), &["10.0.0.0/8"]);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7, 10.0.2.2, 10.0.1.5");
        assert_eq!(h[&X_REAL_IP], "198.51.100.7");
    }

    #[test]
    fn ipv6_peer_and_cidr() {
        let h = run("fd00::1", Some("2001:db8::7"), &["fd00::/8"]);
        assert_eq!(h[&X_REAL_IP], "2001:db8::7");
    }

    #[test]
    fn connection_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let h = outgoing(h, "203.0.113.9", &[]);
        assert!(h.get("x-secret").is_none() && h.get(header::TE).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn connection_cannot_delete_forwarded_headers_or_host() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("X-Forwarded-For, host, x-real-ip"),
        );
        h.insert(header::HOST, HeaderValue::from_static("app.example.com"));
        h.insert(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_static("198.51.100.7"),
        );
        strip_connection_listed(&mut h);
        assert_eq!(h[header::HOST], "app.example.com");
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7");
    }

    #[test]
    fn underscore_spellings_of_forwarding_headers_are_dropped() {
        for name in [
            "x_forwarded_for",
            "x_real_ip",
            "x-forwarded_proto",
            "x_forwarded_anything",
        ] {
            assert!(reads_as_forwarding(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x_app_token",
            "x_real_ipx",
            "x_forwarded",
        ] {
            assert!(!reads_as_forwarding(name), "{name}");
        }
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }
}
