//! `validate(raw) -> Config`: the one place where configuration text becomes typed values.
//! `switchyard check`, startup and every reload run exactly this code.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::HeaderValue;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::error::ConfigError;
use super::model::*;
use super::raw::*;
use super::units::{parse_duration, parse_size};

/// Where errors point: the file's name and its text.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn err<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, spanned.span(), message)
    }
}

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

fn digest(text: &str) -> String {
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

/// No timeout or interval here means anything beyond a day; bounding them keeps every
/// `Instant + d` and `d * n` the daemon computes far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn duration(
    src: &Source,
    key: &str,
    raw: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(s) = raw else { return Ok(default) };
    let d = parse_duration(s.get_ref()).map_err(|e| src.err(s, format!("{key}: {e}")))?;
    if d > MAX_DURATION {
        return Err(src.err(s, format!("{key}: {:?} is more than 24h", s.get_ref())));
    }
    Ok(d)
}

/// A duration that must not be zero (a zero timeout would cut every connection at once).
fn positive(
    src: &Source,
    key: &str,
    raw: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = duration(src, key, raw, default)?;
    match raw {
        Some(s) if d.is_zero() => Err(src.err(s, format!("{key} must be greater than zero"))),
        _ => Ok(d),
    }
}

fn string_or(raw: &Option<Spanned<String>>, default: &str) -> String {
    raw.as_ref()
        .map_or_else(|| default.to_owned(), |s| s.get_ref().clone())
}

fn endpoint_path(
    src: &Source,
    key: &str,
    raw: &Option<Spanned<String>>,
    default: &str,
) -> Result<String, ConfigError> {
    let path = string_or(raw, default);
    match raw {
        Some(s) if !path.starts_with('/') || path.contains(['?', '#']) => Err(src.err(
            s,
            format!("{key}: {path:?} must be a path starting with '/'"),
        )),
        _ => Ok(path),
    }
}

fn socket_addr(src: &Source, key: &str, raw: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    raw.get_ref().parse().map_err(|_| {
        src.err(
            raw,
            format!(
                "{key}: {:?} is not an address like \"0.0.0.0:80\" or \"[::]:80\"",
                raw.get_ref()
            ),
        )
    })
}

fn listen(src: &Source, raw: &Option<Spanned<OneOrMany>>) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![SocketAddr::from(([0, 0, 0, 0], 80))]);
    };
    if raw.get_ref().0.is_empty() {
        return Err(src.err(raw, "server.listen: needs at least one address"));
    }
    raw.get_ref()
        .0
        .iter()
        .map(|a| {
            a.parse().map_err(|_| {
                src.err(
                    raw,
                    format!(
                        "server.listen: {a:?} is not an address like \"0.0.0.0:80\" or \"[::]:80\""
                    ),
                )
            })
        })
        .collect()
}

fn trusted_proxy(src: &Source, raw: &Spanned<String>) -> Result<IpNet, ConfigError> {
    let text = raw.get_ref().trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            src.err(raw, format!("server.trusted_proxies: {text:?} is not a CIDR like \"10.0.0.0/8\" or an IP address"))
        })
}

fn server(src: &Source, raw: &RawServer) -> Result<Server, ConfigError> {
    let health_path = endpoint_path(src, "server.health_path", &raw.health_path, "/healthz")?;
    let ready_path = endpoint_path(src, "server.ready_path", &raw.ready_path, "/readyz")?;
    if health_path == ready_path {
        if let Some(s) = raw.ready_path.as_ref().or(raw.health_path.as_ref()) {
            return Err(src.err(s, "server.ready_path must differ from server.health_path"));
        }
    }
    let max_connections = match &raw.max_connections {
        Some(m) if *m.get_ref() == 0 => {
            return Err(src.err(m, "server.max_connections must be at least 1"))
        }
        Some(m) => *m.get_ref() as usize,
        None => 10_000,
    };
    let max_request_body = match &raw.max_request_body {
        None => 100 << 20,
        Some(s) => parse_size(s.get_ref())
            .map_err(|e| src.err(s, format!("server.max_request_body: {e}")))?,
    };
    Ok(Server {
        listen: listen(src, &raw.listen)?,
        health_path,
        ready_path,
        admin_listen: raw
            .admin_listen
            .as_ref()
            .map(|a| socket_addr(src, "server.admin_listen", a))
            .transpose()?,
        pid_file: raw.pid_file.as_ref().map(|p| PathBuf::from(p.get_ref())),
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .flatten()
            .map(|t| trusted_proxy(src, t))
            .collect::<Result<_, _>>()?,
        access_log: match string_or(&raw.access_log, "stdout").as_str() {
            "stdout" => AccessLog::Stdout,
            "off" => AccessLog::Off,
            path => AccessLog::File(PathBuf::from(path)),
        },
        access_log_format: raw.access_log_format.unwrap_or(AccessLogFormat::Combined),
        header_read_timeout: positive(
            src,
            "server.header_read_timeout",
            &raw.header_read_timeout,
            Duration::from_secs(10),
        )?,
        idle_timeout: positive(
            src,
            "server.idle_timeout",
            &raw.idle_timeout,
            Duration::from_secs(75),
        )?,
        drain_delay: duration(src, "server.drain_delay", &raw.drain_delay, Duration::ZERO)?,
        shutdown_timeout: duration(
            src,
            "server.shutdown_timeout",
            &raw.shutdown_timeout,
            Duration::from_secs(30),
        )?,
        max_connections,
        max_request_body,
    })
}

fn static_site(
    src: &Source,
    config_path: &Path,
    raw: &Spanned<RawStatic>,
) -> Result<StaticSite, ConfigError> {
    let s = raw.get_ref();
    // A relative root is relative to the config file, so the bundled demo runs from anywhere.
    let base = config_path.parent().unwrap_or(Path::new("."));
    let root = base.join(s.root.get_ref());
    let root = root
        .canonicalize()
        .ok()
        .filter(|r| r.is_dir())
        .ok_or_else(|| {
            src.err(
                &s.root,
                format!(
                    "static.root: web root {:?} does not exist or is not a directory",
                    s.root.get_ref()
                ),
            )
        })?;
    let index = match &s.index {
        None => vec!["index.html".to_owned()],
        Some(list) => list
            .iter()
            .map(|i| match i.get_ref() {
                n if n.is_empty() || n.contains('/') || n.starts_with('.') => {
                    Err(src.err(i, format!("static.index: {n:?} must be a plain file name")))
                }
                n => Ok(n.clone()),
            })
            .collect::<Result<_, _>>()?,
    };
    let cache = s
        .cache
        .iter()
        .map(|rule| cache_rule(src, rule))
        .collect::<Result<_, _>>()?;
    Ok(StaticSite {
        root,
        index,
        fallback: s.fallback.unwrap_or(Fallback::Upstream),
        precompressed: s.precompressed.unwrap_or(true),
        sendfile: s.sendfile.unwrap_or(false),
        cache,
    })
}

fn cache_rule(src: &Source, raw: &Spanned<RawCacheRule>) -> Result<CacheRule, ConfigError> {
    let r = raw.get_ref();
    if !r.path_prefix.get_ref().starts_with('/') {
        return Err(src.err(
            &r.path_prefix,
            "static.cache.path_prefix must start with '/'",
        ));
    }
    let value = HeaderValue::from_str(r.cache_control.get_ref()).map_err(|_| {
        src.err(
            &r.cache_control,
            "static.cache.cache_control is not a valid header value",
        )
    })?;
    Ok(CacheRule {
        path_prefix: r.path_prefix.get_ref().clone(),
        cache_control: value,
    })
}

fn proxy(src: &Source, raw: &RawProxy) -> Result<ProxySettings, ConfigError> {
    Ok(ProxySettings {
        connect_timeout: positive(
            src,
            "proxy.connect_timeout",
            &raw.connect_timeout,
            Duration::from_secs(3),
        )?,
        response_timeout: positive(
            src,
            "proxy.response_timeout",
            &raw.response_timeout,
            Duration::from_secs(60),
        )?,
        pool_idle_timeout: positive(
            src,
            "proxy.pool_idle_timeout",
            &raw.pool_idle_timeout,
            Duration::from_secs(4),
        )?,
        health_interval: positive(
            src,
            "proxy.health_interval",
            &raw.health_interval,
            Duration::from_secs(5),
        )?,
        health_timeout: positive(
            src,
            "proxy.health_timeout",
            &raw.health_timeout,
            Duration::from_secs(2),
        )?,
        health_fall: count(src, "proxy.health_fall", &raw.health_fall, 3)?,
        health_rise: count(src, "proxy.health_rise", &raw.health_rise, 2)?,
        switch_requires_healthy: raw.switch_requires_healthy.unwrap_or(true),
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

/// A number of consecutive checks: 1 to 100.
fn count(
    src: &Source,
    key: &str,
    raw: &Option<Spanned<u32>>,
    default: u32,
) -> Result<u32, ConfigError> {
    match raw {
        None => Ok(default),
        Some(n) if (1..=100).contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => Err(src.err(n, format!("{key} must be between 1 and 100"))),
    }
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
