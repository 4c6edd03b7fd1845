//! The configuration file exactly as written: a serde model with `deny_unknown_fields`
//! and spans on every value that validation may have to complain about.
//!
//! Nothing here interprets a value; `validate` turns this into a `Snapshot`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub active: Spanned<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(rename = "static")]
    pub static_files: Option<Spanned<RawStatic>>,
    #[serde(default)]
    pub proxy: RawProxy,
    pub upstreams: Spanned<BTreeMap<Spanned<String>, Spanned<RawUpstream>>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    pub canary: Option<Spanned<RawCanary>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<OneOrMany>>,
    pub health_path: Option<Spanned<String>>,
    pub ready_path: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub pid_file: Option<Spanned<String>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_format: Option<AccessLogFormat>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub drain_delay: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u32>>,
    pub max_request_body: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    Combined,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Fallback {
    #[serde(rename = "upstream")]
    Upstream,
    #[serde(rename = "index")]
    Index,
    #[serde(rename = "404")]
    NotFound,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    pub root: Spanned<String>,
    pub index: Option<Vec<Spanned<String>>>,
    pub fallback: Option<Fallback>,
    pub precompressed: Option<bool>,
    pub sendfile: Option<bool>,
    #[serde(default)]
    pub cache: Vec<Spanned<RawCacheRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    pub path_prefix: Spanned<String>,
    pub cache_control: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub health_interval: Option<Spanned<String>>,
    pub health_timeout: Option<Spanned<String>>,
    pub health_fall: Option<Spanned<u32>>,
    pub health_rise: Option<Spanned<u32>>,
    pub switch_requires_healthy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub upstream: Spanned<String>,
}

/// `listen = "0.0.0.0:80"` or `listen = ["0.0.0.0:80", "[::]:80"]`.
#[derive(Debug)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or a list of address strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(V)
    }
}

/// An upstream in shorthand (`blue = "127.0.0.1:8080"`) or table form
/// (`green = { url = "http://127.0.0.1:8081", health = "/health" }`).
///
/// Hand-written rather than `#[serde(untagged)]` so that a typo inside the table form is
/// reported as "unknown field `helth`" at its position instead of "did not match any variant".
#[derive(Debug)]
pub struct RawUpstream {
    pub url: String,
    pub health: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTable {
    url: String,
    health: Option<String>,
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host:port\", \"http://host:port\" or { url = ..., health = ... }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawUpstream, E> {
                Ok(RawUpstream {
                    url: s.to_owned(),
                    health: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawUpstream, A::Error> {
                let t = UpstreamTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawUpstream {
                    url: t.url,
                    health: t.health,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub upstream: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub steps: Option<Spanned<Vec<Spanned<i64>>>>,
    pub interval: Option<Spanned<String>>,
    pub max_error_ratio: Option<Spanned<f64>>,
    pub max_p99: Option<Spanned<String>>,
    pub affinity: Option<Affinity>,
}

/// How a client keeps its colour while a canary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Affinity {
    /// The `switchyard_colour` cookie, set by switchyard.
    #[default]
    Cookie,
    /// A hash of the client's address (`X-Real-IP` rules).
    ClientIp,
    /// Every request drawn anew.
    None,
}

impl Affinity {
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Cookie => "cookie",
            Affinity::ClientIp => "client-ip",
            Affinity::None => "none",
        }
    }
}
