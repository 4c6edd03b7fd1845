//! Which upstream gets a request that `active` would get: the canary's share of clients,
//! each client kept on its colour (`affinity`), and, for one interval after a switch,
//! clients whose cookie names the previous colour kept on it while it is healthy (so a
//! session spread over several requests, such as socket.io long-polling, ends where it
//! began).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::HeaderMap;

use crate::config::{Affinity, Canary, Upstream};
use crate::policy::forwarding::client_ip;
use crate::state::snapshot::{Shared, Snapshot};

/// The cookie switchyard sets to keep a client on its colour.
pub const COOKIE: &str = "switchyard_colour";

/// The upstream chosen, and the cookie to set on its response, if any.
pub struct Colour<'a> {
    pub upstream: &'a Arc<Upstream>,
    pub set_cookie: Option<HeaderValue>,
}

impl<'a> Colour<'a> {
    /// A route's own upstream: no split, no cookie.
    pub fn named(upstream: &'a Arc<Upstream>) -> Self {
        Colour::plain(upstream)
    }

    fn plain(upstream: &'a Arc<Upstream>) -> Self {
        Colour {
            upstream,
            set_cookie: None,
        }
    }
}

/// Chooses between `active`, the canary and the previous colour for a request from
/// `peer`. Without a canary or a recent switch this is `active`, with no lookup at all.
pub fn choose<'a>(
    headers: &HeaderMap,
    peer: IpAddr,
    snap: &'a Snapshot,
    shared: &Shared,
) -> Colour<'a> {
    let config = &snap.config;
    if snap.previous.is_none() && config.canary.is_none() {
        return Colour::plain(&config.active);
    }
    let cookie = cookie(headers);
    if let Some(previous) = &snap.previous {
        let keeps = cookie == Some(previous.upstream.name.as_str())
            && Instant::now() < previous.until
            && !shared.health.is_down(&previous.upstream);
        if keeps {
            return Colour::plain(&previous.upstream);
        }
    }
    match &config.canary {
        None => Colour::plain(&config.active),
        Some(canary) => split(headers, peer, snap, shared, canary, cookie),
    }
}

fn split<'a>(
    headers: &HeaderMap,
    peer: IpAddr,
    snap: &'a Snapshot,
    shared: &Shared,
    canary: &'a Canary,
    cookie: Option<&str>,
) -> Colour<'a> {
    let active = &snap.config.active;
    let weight = shared.canary.weight();
    let pick = |draw: u8| match draw < weight {
        true => &canary.upstream,
        false => active,
    };
    match canary.affinity {
        Affinity::None => Colour::plain(pick(shared.canary.draw())),
        Affinity::ClientIp => {
            let trusted = &snap.config.server.trusted_proxies;
            Colour::plain(pick(bucket(client_ip(headers, peer, trusted))))
        }
        Affinity::Cookie => {
            // A client keeps its colour while that colour is in the split.
            if cookie == Some(canary.upstream.name.as_str()) && weight > 0 {
                return Colour::plain(&canary.upstream);
            }
            // At 100 % `active` has left the split; its cookie holders still get one
            // interval on it, as after a switch, while it is healthy.
            let keeps_active = weight < 100
                || (shared.canary.active_keeps_its_clients() && !shared.health.is_down(active));
            if cookie == Some(active.name.as_str()) && keeps_active {
                return Colour::plain(active);
            }
            let upstream = pick(shared.canary.draw());
            Colour {
                upstream,
                set_cookie: set_cookie(&upstream.name),
            }
        }
    }
}

/// The client's stable place among 100 buckets: FNV-1a over the address's canonical
/// octets, a fixed function (std's hasher may change between Rust releases, which would
/// move clients between colours on an upgrade), the same for `::ffff:a.b.c.d` and `a.b.c.d`.
fn bucket(ip: IpAddr) -> u8 {
    let octets = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let hash = octets.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % 100) as u8
}

/// The value of the `switchyard_colour` cookie, if the request carries one. Read as bytes:
/// another cookie's non-ASCII value must not hide it.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == COOKIE.as_bytes()).then(|| &pair[eq + 1..])
        })
        .find_map(|value| std::str::from_utf8(value).ok())
        .map(|value| value.trim_matches('"'))
}

fn set_cookie(name: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{COOKIE}={name}; Path=/; HttpOnly; SameSite=Lax")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; switchyard_colour=green"),
        );
        assert_eq!(cookie(&h), Some("green"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("switchyard_colour=\"blue\"; b=2"),
        );
        assert_eq!(cookie(&h), Some("blue"));
        assert_eq!(cookie(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"name=\xc3\xa9t\xc3\xa9; switchyard_colour=green")
                .expect("value"),
        );
        assert_eq!(cookie(&h), Some("green"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("xswitchyard_colour=green"),
        );
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn a_client_address_keeps_its_bucket() {
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(bucket(ip), bucket(ip));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().expect("ip");
        assert_eq!(bucket(mapped), bucket(ip));
        let spread: std::collections::BTreeSet<u8> = (0..=255u8)
            .map(|i| bucket(IpAddr::from([198, 51, 100, i])))
            .collect();
        assert!(spread.len() > 80, "{} buckets of 100", spread.len());
    }
}
