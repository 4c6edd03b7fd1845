//! Request -> decision, in SPEC order: health and ready endpoints, then `[[routes]]` (first
//! match wins), then the web root and fallback (`Local`).
//!
//! Everything matched against was lower-cased and trimmed at load time, so routing is a
//! handful of byte comparisons with no allocation.

use http::{header, Request};

use crate::config::{Config, HostMatch, PathPrefix, Route};

#[derive(Debug)]
pub enum Decision<'a> {
    Health,
    Ready,
    /// Proxy to this route's upstream.
    Route(&'a Route),
    /// The request named a route's prefix without its trailing slash: 301 to add it.
    RouteSlash,
    /// Not claimed by an endpoint or a route: the web root, then `fallback`.
    Local,
}

impl Decision<'_> {
    pub fn is_local(&self) -> bool {
        matches!(self, Decision::Local)
    }
}

pub fn decide<'a, B>(config: &'a Config, req: &Request<B>) -> Decision<'a> {
    let path = req.uri().path();
    if path == config.server.health_path {
        return Decision::Health;
    }
    if path == config.server.ready_path {
        return Decision::Ready;
    }
    let host = request_host(req);
    for route in &config.routes {
        if !route.host.as_ref().is_none_or(|h| host_matches(h, host)) {
            continue;
        }
        match route
            .path_prefix
            .as_ref()
            .map_or(Prefix::Under, |p| prefix_match(p, path))
        {
            Prefix::Under => return Decision::Route(route),
            Prefix::Bare => return Decision::RouteSlash,
            Prefix::No => {}
        }
    }
    Decision::Local
}

/// The request's host without port or trailing dot: the Host header, else (HTTP/2) the
/// URI's authority.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    let host = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

fn host_matches(pattern: &HostMatch, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    match pattern {
        HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
        HostMatch::Suffix(suffix) => {
            host.len() > suffix.len()
                && host.as_bytes()[host.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
    }
}

enum Prefix {
    No,
    Under,
    Bare,
}

/// Whole-segment prefix match: `/grafana` matches `/grafana` and `/grafana/x`, never
/// `/grafanax`.
fn prefix_match(prefix: &PathPrefix, path: &str) -> Prefix {
    let base = prefix.base.as_str();
    match path.strip_prefix(base) {
        _ if base.is_empty() => Prefix::Under,
        Some("") if prefix.redirect_bare => Prefix::Bare,
        Some("") => Prefix::Under,
        Some(rest) if rest.starts_with('/') => Prefix::Under,
        _ => Prefix::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, path: &str) -> Request<()> {
        Request::builder()
            .uri(path)
            .header("host", host)
            .body(())
            .unwrap()
    }

    #[test]
    fn host_forms() {
        assert_eq!(
            request_host(&req("Example.COM:8080", "/")),
            Some("Example.COM")
        );
        assert_eq!(request_host(&req("[::1]:80", "/")), Some("::1"));
        assert_eq!(request_host(&req("example.com.", "/")), Some("example.com"));
        let wild = HostMatch::Suffix(".example.com".into());
        assert!(host_matches(&wild, Some("a.EXAMPLE.com")));
        assert!(host_matches(&wild, Some("a.b.example.com")));
        assert!(!host_matches(&wild, Some("example.com")));
        assert!(!host_matches(&wild, Some("badexample.com")));
    }

    #[test]
    fn segments() {
        let p = PathPrefix {
            base: "/grafana".into(),
            redirect_bare: true,
        };
        assert!(matches!(prefix_match(&p, "/grafana/"), Prefix::Under));
        assert!(matches!(prefix_match(&p, "/grafana/api"), Prefix::Under));
        assert!(matches!(prefix_match(&p, "/grafana"), Prefix::Bare));
        assert!(matches!(prefix_match(&p, "/grafanax"), Prefix::No));
    }
}
