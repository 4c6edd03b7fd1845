//! `validate(raw) -> Config`: the one place where configuration text becomes typed values.
//! `switchyard check`, startup and every reload run exactly this code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::canary::canary;
use super::error::{ConfigError, Source};
use super::model::*;
use super::raw::*;
use super::settings::{proxy, server, static_site};

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&name, format!("cannot read configuration: {e}")))?;
    parse(path, &text)
}

/// Parses and validates configuration text that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = Source { file: &file, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ConfigError::at(&file, text, span, e.message().trim_end().to_owned())
    })?;
    build(&src, path, raw)
}

fn build(src: &Source, path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let upstreams = upstreams(src, &raw.upstreams)?;
    let active = find_upstream(src, &upstreams, &raw.active, "active")?;
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(src, i, r, &upstreams))
        .collect::<Result<Vec<_>, _>>()?;
    let server = server(src, &raw.server)?;
    let static_files = raw
        .static_files
        .as_ref()
        .map(|s| static_site(src, path, s))
        .transpose()?;
    let proxy = proxy(src, &raw.proxy)?;
    let canary = raw
        .canary
        .as_ref()
        .map(|c| canary(src, c, &upstreams, &active))
        .transpose()?;
    let mut warnings = warnings(&server, &proxy);
    if let Some(w) = unreachable_active(&static_files, &routes, &active) {
        warnings.push(w);
    }
    Ok(Config {
        file: path.to_owned(),
        digest: digest(src.text),
        active,
        server,
        static_files,
        proxy,
        upstreams,
        routes,
        canary,
        warnings,
    })
}

/// Resolves an upstream name, listing the defined ones when it names none.
fn find_upstream(
    src: &Source,
    upstreams: &[Arc<Upstream>],
    name: &Spanned<String>,
    key: &str,
) -> Result<Arc<Upstream>, ConfigError> {
    if let Some(found) = upstreams.iter().find(|u| u.name == *name.get_ref()) {
        return Ok(Arc::clone(found));
    }
    let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    Err(src.err(
        name,
        format!(
            "{key} = {:?} names no upstream (defined: {})",
            name.get_ref(),
            known.join(", ")
        ),
    ))
}

/// The first 12 hex digits of the SHA-256 of `text`: short enough to read in a log line,
/// long enough to tell versions apart.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

type RawUpstreams = Spanned<BTreeMap<Spanned<String>, Spanned<RawUpstream>>>;

fn upstreams(src: &Source, raw: &RawUpstreams) -> Result<Vec<Arc<Upstream>>, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(src.err(raw, "[upstreams] must define at least one upstream"));
    }
    if let Some((name, _)) = raw.get_ref().iter().find(|(n, _)| n.get_ref() == ACTIVE) {
        return Err(src.err(
            name,
            "upstreams.active: `active` is reserved (a route's `upstream = \"active\"` follows the switch); name the upstream blue, green, app...",
        ));
    }
    raw.get_ref()
        .iter()
        .enumerate()
        .map(|(index, (name, up))| upstream(src, index, name, up).map(Arc::new))
        .collect()
}

fn upstream(
    src: &Source,
    index: usize,
    name: &Spanned<String>,
    raw: &Spanned<RawUpstream>,
) -> Result<Upstream, ConfigError> {
    let key = format!("upstreams.{}", name.get_ref());
    let url = raw.get_ref().url.trim();
    let rest = match url.split_once("://") {
        None => url,
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(src.err(
                raw,
                format!(
                "{key}: scheme {scheme:?} is not supported; upstreams are plain http://host:port"
            ),
            ))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let authority: Authority = rest
        .parse()
        .ok()
        .filter(|a: &Authority| !a.as_str().contains('@') && !a.host().is_empty())
        .ok_or_else(|| {
            src.err(
                raw,
                format!("{key}: {url:?} is not host:port or http://host:port"),
            )
        })?;
    let authority = match authority.port_u16() {
        Some(_) => authority,
        None => Authority::try_from(format!("{}:80", authority.as_str()))
            .map_err(|_| src.err(raw, format!("{key}: {url:?} has no usable port")))?,
    };
    let health = match &raw.get_ref().health {
        None => None,
        Some(h) if h.starts_with('/') => Some(
            PathAndQuery::try_from(h.as_str())
                .map_err(|_| src.err(raw, format!("{key}.health: {h:?} is not a valid path")))?,
        ),
        Some(h) => return Err(src.err(raw, format!("{key}.health: {h:?} must start with '/'"))),
    };
    Ok(Upstream {
        name: name.get_ref().clone(),
        index,
        url: format!("http://{authority}"),
        authority,
        health,
    })
}

fn route(
    src: &Source,
    index: usize,
    raw: &Spanned<RawRoute>,
    upstreams: &[Arc<Upstream>],
) -> Result<Route, ConfigError> {
    let key = format!("routes[{index}]");
    let r = raw.get_ref();
    if r.host.is_none() && r.path_prefix.is_none() {
        return Err(src.err(
            raw,
            format!("{key}: a route needs host, path_prefix or both"),
        ));
    }
    let host = r
        .host
        .as_ref()
        .map(|h| host_match(src, &key, h))
        .transpose()?;
    let path_prefix = r
        .path_prefix
        .as_ref()
        .map(|p| path_prefix(src, &key, p))
        .transpose()?;
    Ok(Route {
        host,
        path_prefix,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        upstream: match r.upstream.get_ref().as_str() {
            ACTIVE => RouteUpstream::Active,
            _ => RouteUpstream::Named(find_upstream(
                src,
                upstreams,
                &r.upstream,
                &format!("{key}.upstream"),
            )?),
        },
    })
}

fn host_match(src: &Source, key: &str, raw: &Spanned<String>) -> Result<HostMatch, ConfigError> {
    let host = raw.get_ref().to_ascii_lowercase();
    let (wild, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !valid {
        return Err(src.err(
            raw,
            format!(
                "{key}.host: {:?} is not a host name or *.domain (no port, no scheme)",
                raw.get_ref()
            ),
        ));
    }
    Ok(if wild {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(host)
    })
}

fn path_prefix(src: &Source, key: &str, raw: &Spanned<String>) -> Result<PathPrefix, ConfigError> {
    let p = raw.get_ref();
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(src.err(
            raw,
            format!("{key}.path_prefix: {p:?} must be a path starting with '/'"),
        ));
    }
    let base = p.trim_end_matches('/');
    Ok(PathPrefix {
        base: base.to_owned(),
        redirect_bare: !base.is_empty() && p.ends_with('/'),
    })
}

/// With a web root whose fallback is not the upstream, only routes reach an upstream: if
/// none names `active`, a blue/green switch changes nothing a client can see.
fn unreachable_active(
    site: &Option<StaticSite>,
    routes: &[Route],
    active: &Upstream,
) -> Option<String> {
    let fallback = site.as_ref()?.fallback;
    let follows = routes
        .iter()
        .any(|r| matches!(r.upstream, RouteUpstream::Active));
    (fallback != Fallback::Upstream && !follows).then(|| {
        format!(
            "no request can reach active = {:?}: static.fallback is not \"upstream\" and no route has upstream = \"active\", so `switchyard switch` would change nothing (route the API with upstream = \"active\")",
            active.name
        )
    })
}

fn warnings(server: &Server, proxy: &ProxySettings) -> Vec<String> {
    let mut w = Vec::new();
    if server.idle_timeout <= Duration::from_secs(60) {
        w.push(format!(
            "server.idle_timeout = {} is not above 60s, the ALB's default idle timeout: the load balancer may reuse a connection switchyard is closing and answer 502",
            humantime::format_duration(server.idle_timeout)
        ));
    }
    if server.trusted_proxies.is_empty() {
        w.push("server.trusted_proxies is empty: X-Forwarded-For/Proto/Host from the load balancer are replaced, so the app sees the load balancer's address as the client".to_owned());
    }
    if proxy.pool_idle_timeout > Duration::from_secs(5) {
        w.push(format!(
            "proxy.pool_idle_timeout = {} is above 5s: an app with Node's 5 s keep-alive timeout may close a pooled connection just as it is reused",
            humantime::format_duration(proxy.pool_idle_timeout)
        ));
    }
    w
}
