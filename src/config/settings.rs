//! The settings tables (`[server]`, `[static]`, `[proxy]`) and the scalar values they are
//! made of: durations, sizes, addresses, paths, counts, each checked with the key and
//! position an error names.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::model::*;
use super::raw::*;
use super::units::{parse_duration, parse_size};

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
pub(super) fn positive(
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

pub(super) fn server(src: &Source, raw: &RawServer) -> Result<Server, ConfigError> {
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

pub(super) fn static_site(
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

pub(super) fn proxy(src: &Source, raw: &RawProxy) -> Result<ProxySettings, ConfigError> {
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
