//! The validated configuration: every address, duration, size, CIDR and name already parsed
//! and resolved, so the request path never parses a string that could have been parsed at
//! load time. Immutable once built.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::HeaderValue;
use ipnet::IpNet;

pub use super::raw::{AccessLogFormat, Affinity, Fallback};

#[derive(Debug)]
pub struct Config {
    /// The file this was read from, as given on the command line.
    pub file: PathBuf,
    /// First 12 hex digits of the SHA-256 of the file's bytes: tells an operator which
    /// version of the file is in force.
    pub digest: String,
    pub active: Arc<Upstream>,
    pub server: Server,
    pub static_files: Option<StaticSite>,
    pub proxy: ProxySettings,
    /// Sorted by name.
    pub upstreams: Vec<Arc<Upstream>>,
    pub routes: Vec<Route>,
    pub canary: Option<Canary>,
    /// Legal settings that are known to bite behind a load balancer.
    pub warnings: Vec<String>,
}

impl Config {
    /// Whether `upstream` is health-checked under this configuration: it has a health path,
    /// or it is the active one (probed at its root). Any other upstream's last known state
    /// is from an earlier configuration and no longer moves.
    pub fn is_checked(&self, upstream: &Upstream) -> bool {
        upstream.health.is_some() || *upstream == *self.active
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub health_path: String,
    pub ready_path: String,
    pub admin_listen: Option<SocketAddr>,
    pub pid_file: Option<PathBuf>,
    pub trusted_proxies: Vec<IpNet>,
    pub access_log: AccessLog,
    pub access_log_format: AccessLogFormat,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    pub max_request_body: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Debug)]
pub struct StaticSite {
    /// Canonical (symlinks resolved), so that "is this file inside the root" is a prefix test.
    pub root: PathBuf,
    pub index: Vec<String>,
    pub fallback: Fallback,
    pub precompressed: bool,
    /// Large files go from the page cache to the socket with `sendfile` (nginx's
    /// `sendfile on`); otherwise they are read and written.
    pub sendfile: bool,
    pub cache: Vec<CacheRule>,
}

#[derive(Debug)]
pub struct CacheRule {
    pub path_prefix: String,
    pub cache_control: HeaderValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub health_interval: Duration,
    /// One check that takes longer has failed.
    pub health_timeout: Duration,
    /// Consecutive failed checks before an upstream is down.
    pub health_fall: u32,
    /// Consecutive passed checks before a down upstream is up again.
    pub health_rise: u32,
    pub switch_requires_healthy: bool,
}

/// `[canary]`: a share of the clients `active` would get goes to another upstream, and
/// with `steps` the daemon raises that share each `interval` the canary's own figures stay
/// within bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub upstream: Arc<Upstream>,
    /// Percent of clients, 0 to 100: the first step when there are steps.
    pub weight: u8,
    /// Ascending percentages; empty when the weight is held as given.
    pub steps: Vec<u8>,
    pub interval: Duration,
    /// 0.0 to 1.0: 5xx answers and upstream failures over the canary's requests.
    pub max_error_ratio: f64,
    pub max_p99: Option<Duration>,
    pub affinity: Affinity,
}

impl Canary {
    /// The same plan: the same upstream by name and the same values. Not `==`, which
    /// would also compare the upstream's position among `[upstreams]` and its address, so
    /// adding an unrelated upstream would look like a new canary.
    pub fn same_plan(&self, other: &Canary) -> bool {
        self.upstream.name == other.upstream.name
            && self.weight == other.weight
            && self.steps == other.steps
            && self.interval == other.interval
            && self.max_error_ratio == other.max_error_ratio
            && self.max_p99 == other.max_p99
            && self.affinity == other.affinity
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// Position in `Config::upstreams`, so a request can name its upstream without
    /// touching the shared `Arc`'s counter.
    pub index: usize,
    /// `host:port`, used as the authority of every proxied request URI.
    pub authority: Authority,
    /// `http://host:port` for logs and summaries.
    pub url: String,
    pub health: Option<PathAndQuery>,
}

#[derive(Debug)]
pub struct Route {
    pub host: Option<HostMatch>,
    pub path_prefix: Option<PathPrefix>,
    pub strip_prefix: bool,
    pub upstream: RouteUpstream,
}

/// Where a route sends its requests.
#[derive(Debug)]
pub enum RouteUpstream {
    /// `upstream = "active"`: whichever upstream `active` names in this snapshot, so the
    /// route follows the blue/green switch.
    Active,
    Named(Arc<Upstream>),
}

/// The reserved route target that follows the switch; no upstream may be called so.
pub const ACTIVE: &str = "active";

impl Route {
    /// The upstream this route proxies to, given the snapshot's `active`.
    pub fn upstream<'a>(&'a self, active: &'a Arc<Upstream>) -> &'a Arc<Upstream> {
        match &self.upstream {
            RouteUpstream::Active => active,
            RouteUpstream::Named(upstream) => upstream,
        }
    }
}

/// Lower-cased at load time so matching is an allocation-free ASCII comparison.
#[derive(Debug, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain, not the bare domain.
    Suffix(String),
}

#[derive(Debug, PartialEq, Eq)]
pub struct PathPrefix {
    /// Without its trailing slash; empty for `/`, which matches everything.
    pub base: String,
    /// The prefix was written with a trailing slash, so `/base` alone is redirected to `/base/`.
    pub redirect_bare: bool,
}
