//! HTTP caching semantics for files (RFC 9110 §13 and §14): validators, conditional
//! requests, byte ranges, and the choice of a precompressed variant. Pure functions over
//! headers, so every edge case is unit-tested without a server.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderValue};

/// A precompressed sibling's encoding, in order of preference when q-values tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file name suffix of the sibling: `app.js.br`.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// An ETag in nginx's form, `"<mtime hex>-<length hex>"`, with the encoding appended for a
/// precompressed variant so that caches never mix the two representations.
pub fn etag(modified: Option<SystemTime>, len: u64, encoding: Option<Encoding>) -> HeaderValue {
    let secs = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let suffix = encoding.map_or("", |e| match e {
        Encoding::Brotli => "-br",
        Encoding::Gzip => "-gz",
    });
    HeaderValue::from_str(&format!("\"{secs:x}-{len:x}{suffix}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether a GET/HEAD can be answered 304. `If-None-Match` wins over
/// `If-Modified-Since` when both are present (RFC 9110 §13.2.2).
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        let ours = opaque(etag.to_str().unwrap_or(""));
        return headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag) == ours);
    }
    let (Some(since), Some(modified)) = (header_date(headers, header::IF_MODIFIED_SINCE), modified)
    else {
        return false;
    };
    whole_seconds(modified) <= since
}

/// The tag without its weakness marker: If-None-Match uses the weak comparison.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// HTTP dates have one-second resolution; file times do not.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeDecision {
    /// No usable Range (absent, malformed, several ranges, or If-Range failed): 200.
    Full,
    /// 206 with this byte range.
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets `Range` and `If-Range` for a representation of `len` bytes.
pub fn range(
    headers: &HeaderMap,
    len: u64,
    etag: &HeaderValue,
    modified: Option<SystemTime>,
) -> RangeDecision {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeDecision::Full;
    };
    if !if_range_holds(headers, etag, modified) {
        return RangeDecision::Full;
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeDecision::Full;
    };
    // Several ranges would need multipart/byteranges; answering the whole file is allowed.
    if set.contains(',') {
        return RangeDecision::Full;
    }
    match parse_one(set.trim(), len) {
        Some(Some(r)) => RangeDecision::Partial(r),
        Some(None) => RangeDecision::Unsatisfiable,
        None => RangeDecision::Full,
    }
}

/// `None`: malformed (ignore the header); `Some(None)`: unsatisfiable.
fn parse_one(spec: &str, len: u64) -> Option<Option<Range<u64>>> {
    let (first, last) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    if first.is_empty() {
        let suffix = num(last)?;
        return Some((suffix > 0 && len > 0).then(|| len.saturating_sub(suffix)..len));
    }
    let start = num(first)?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        num(last)?
    };
    if end < start {
        return None;
    }
    Some((start < len).then(|| start..end.min(len - 1) + 1))
}

/// `If-Range`: an entity tag must match strongly, a date must equal Last-Modified.
fn if_range_holds(headers: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>) -> bool {
    let Some(value) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return !value.starts_with("W/") && value.as_bytes() == etag.as_bytes();
    }
    match (httpdate::parse_http_date(value), modified) {
        (Ok(date), Some(m)) => whole_seconds(m) == date,
        _ => false,
    }
}

/// The best encoding among `available` that the client accepts, by q-value, ties going to
/// the order of `Encoding::ALL` (brotli first). `None`: send the identity representation.
pub fn choose_encoding(accept: Option<&HeaderValue>, available: &[Encoding]) -> Option<Encoding> {
    let accept = accept?.to_str().ok()?;
    let mut best: Option<(Encoding, f32)> = None;
    for enc in Encoding::ALL
        .iter()
        .copied()
        .filter(|e| available.contains(e))
    {
        let q = quality(accept, enc.token());
        if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((enc, q));
        }
    }
    best.map(|(e, _)| e)
}

/// The q-value `accept` gives `token` (falling back to `*`), 0 when not accepted.
fn quality(accept: &str, token: &str) -> f32 {
    let mut wildcard = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let p = p.trim();
                (p.len() > 2 && p[..2].eq_ignore_ascii_case("q=")).then(|| &p[2..])
            })
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case(token) {
            return q;
        }
        if name == "*" {
            wildcard = Some(q);
        }
    }
    wildcard.unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    const TAG: &str = "\"5f-400\"";

    fn t(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn if_none_match_lists_weak_and_star() {
        let tag = HeaderValue::from_static(TAG);
        assert!(not_modified(&h(&[("if-none-match", TAG)]), &tag, t(1)));
        assert!(not_modified(
            &h(&[("if-none-match", "\"x\", W/\"5f-400\"")]),
            &tag,
            t(1)
        ));
        assert!(not_modified(&h(&[("if-none-match", "*")]), &tag, t(1)));
        assert!(!not_modified(
            &h(&[("if-none-match", "\"other\"")]),
            &tag,
            t(1)
        ));
        // If-None-Match takes precedence over a matching If-Modified-Since.
        let ims = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(100));
        assert!(!not_modified(
            &h(&[("if-none-match", "\"other\""), ("if-modified-since", &ims)]),
            &tag,
            t(50)
        ));
        assert!(not_modified(
            &h(&[("if-modified-since", &ims)]),
            &tag,
            t(100)
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", &ims)]),
            &tag,
            t(101)
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", "garbage")]),
            &tag,
            t(1)
        ));
    }

    #[test]
    fn ranges() {
        let tag = HeaderValue::from_static(TAG);
        let r = |spec: &str| range(&h(&[("range", spec)]), 1000, &tag, t(1));
        assert_eq!(r("bytes=0-99"), RangeDecision::Partial(0..100));
        assert_eq!(r("bytes=900-"), RangeDecision::Partial(900..1000));
        assert_eq!(r("bytes=-100"), RangeDecision::Partial(900..1000));
        assert_eq!(r("bytes=-5000"), RangeDecision::Partial(0..1000));
        assert_eq!(r("bytes=500-5000"), RangeDecision::Partial(500..1000));
        assert_eq!(r("bytes=1000-"), RangeDecision::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeDecision::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), RangeDecision::Full);
        assert_eq!(r("bytes=5-1"), RangeDecision::Full);
        assert_eq!(r("items=0-1"), RangeDecision::Full);
        assert_eq!(r("bytes=a-b"), RangeDecision::Full);
        assert_eq!(
            range(&h(&[("range", "bytes=0-")]), 0, &tag, t(1)),
            RangeDecision::Unsatisfiable
        );
    }

    #[test]
    fn if_range() {
        let tag = HeaderValue::from_static(TAG);
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(100));
        let r = |ir: &str| {
            range(
                &h(&[("range", "bytes=0-9"), ("if-range", ir)]),
                1000,
                &tag,
                t(100),
            )
        };
        assert_eq!(r(TAG), RangeDecision::Partial(0..10));
        assert_eq!(r("\"stale\""), RangeDecision::Full);
        assert_eq!(r("W/\"5f-400\""), RangeDecision::Full);
        assert_eq!(r(&date), RangeDecision::Partial(0..10));
        assert_eq!(
            r(&httpdate::fmt_http_date(
                UNIX_EPOCH + Duration::from_secs(99)
            )),
            RangeDecision::Full
        );
    }

    #[test]
    fn encodings() {
        let all = [Encoding::Brotli, Encoding::Gzip];
        let c = |a: &str, av: &[Encoding]| {
            choose_encoding(Some(&HeaderValue::from_str(a).unwrap()), av)
        };
        assert_eq!(c("gzip, deflate, br", &all), Some(Encoding::Brotli));
        assert_eq!(c("gzip", &all), Some(Encoding::Gzip));
        assert_eq!(c("br;q=0.5, gzip;q=0.8", &all), Some(Encoding::Gzip));
        assert_eq!(c("br;q=0, gzip;q=0", &all), None);
        assert_eq!(c("br;Q=0, gzip", &all), Some(Encoding::Gzip));
        assert_eq!(c("*", &all), Some(Encoding::Brotli));
        assert_eq!(c("*;q=0.1, br;q=0", &all), Some(Encoding::Gzip));
        assert_eq!(c("br", &[Encoding::Gzip]), None);
        assert_eq!(c("identity", &all), None);
        assert_eq!(choose_encoding(None, &all), None);
    }
}
