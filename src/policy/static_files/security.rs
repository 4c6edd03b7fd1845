//! Where path traversal is prevented: the request path is decoded and checked here, before
//! it is ever joined to the web root.
//!
//! Rules (SPEC "Static files"): `.` and `..` segments, decoded or not, are refused; an
//! encoded slash or backslash (`%2F`, `%5C`) is refused rather than decoded into a
//! separator; NUL, other control characters and malformed escapes are malformed requests
//! (this function does not rely on hyper refusing raw control bytes in a request line: the
//! own HTTP/1.1 path is another way in); dotfiles are hidden except under
//! `/.well-known/`. Symlinks are checked after resolution, in `lookup`.
//!
//! `request_checks` refuses dot segments for every request before routing, so that no
//! route can be reached through one; this module does not count on that. It is the
//! filesystem's own guarantee, complete by itself and fuzzed by itself (`path_resolution`),
//! so that a change to the request checks can never open the web root.

use std::borrow::Cow;

/// Why a request path cannot name a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRejection {
    /// Answered 400: not a well-formed path (bad escape, NUL, not UTF-8, not absolute).
    Malformed,
    /// Answered 404 by switchyard itself and never passed on: traversal, encoded
    /// separators, hidden files.
    Forbidden,
}

/// A request path that is safe to join to the web root.
#[derive(Debug, PartialEq, Eq)]
pub struct SafePath<'a> {
    /// Relative, `/`-separated, no empty, `.` or `..` segments; empty for the root itself.
    pub relative: Cow<'a, str>,
    /// The request named a directory (`/docs/`), which matters for the 301 rule.
    pub trailing_slash: bool,
}

/// Decodes the path part of a request URI and checks it against every rule above.
pub fn sanitize(raw_path: &str) -> Result<SafePath<'_>, PathRejection> {
    if !raw_path.starts_with('/') {
        return Err(PathRejection::Malformed);
    }
    let decoded = percent_decode(raw_path)?;
    if decoded.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathRejection::Malformed);
    }
    let trailing_slash = decoded.ends_with('/');
    // Byte-wise splitting: this runs on every request, and `str::split` costs more than
    // the checks themselves.
    let mut first = true;
    for segment in decoded
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
    {
        check_segment(segment, first)?;
        first = false;
    }
    let relative = match decoded {
        Cow::Borrowed(s) => normalize_borrowed(s),
        Cow::Owned(s) => Cow::Owned(normalize_owned(&s)),
    };
    Ok(SafePath {
        relative,
        trailing_slash,
    })
}

fn check_segment(segment: &[u8], first: bool) -> Result<(), PathRejection> {
    if segment == b"." || segment == b".." {
        return Err(PathRejection::Forbidden);
    }
    if segment.starts_with(b".") && !(first && segment == b".well-known") {
        return Err(PathRejection::Forbidden);
    }
    Ok(())
}

/// Strips the leading slash; only collapses `//` runs (rare) with an allocation.
fn normalize_borrowed(s: &str) -> Cow<'_, str> {
    let trimmed = s.trim_matches('/');
    if trimmed.as_bytes().windows(2).any(|w| w == b"//") {
        Cow::Owned(normalize_owned(trimmed))
    } else {
        Cow::Borrowed(trimmed)
    }
}

fn normalize_owned(s: &str) -> String {
    s.split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-decodes without allocating when there is nothing to decode. Hand-written over
/// `percent_encoding::percent_decode_str` because that one passes malformed escapes
/// through verbatim and would decode `%2F` into a separator; here both are rejections.
fn percent_decode(raw: &str) -> Result<Cow<'_, str>, PathRejection> {
    if !raw.as_bytes().contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathRejection::Malformed)?;
        let byte = (hex_value(hex[0])? << 4) | hex_value(hex[1])?;
        match byte {
            0 => return Err(PathRejection::Malformed),
            b'/' | b'\\' => return Err(PathRejection::Forbidden),
            b => out.push(b),
        }
        i += 3;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathRejection::Malformed)
}

fn hex_value(b: u8) -> Result<u8, PathRejection> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(PathRejection::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathRejection::*;

    fn rel(p: &str) -> Result<String, PathRejection> {
        sanitize(p).map(|s| s.relative.into_owned())
    }

    #[test]
    fn plain_paths() {
        assert_eq!(rel("/"), Ok(String::new()));
        assert_eq!(rel("/a/b.css"), Ok("a/b.css".into()));
        assert_eq!(rel("//a//b/"), Ok("a/b".into()));
        assert_eq!(rel("/caf%C3%A9.txt"), Ok("café.txt".into()));
        assert_eq!(rel("/.well-known/acme"), Ok(".well-known/acme".into()));
        assert!(sanitize("/docs/").unwrap().trailing_slash);
    }

    #[test]
    fn traversal_and_hidden() {
        for p in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.env",
            "/a/.git/config",
            "/./a",
            "/a/.well-known/x",
            "/.well-known/.secret",
        ] {
            assert_eq!(rel(p), Err(Forbidden), "{p}");
        }
        for p in ["/a%2fb", "/a%2Fb", "/a%5cb", "/..%2f..%2fetc"] {
            assert_eq!(rel(p), Err(Forbidden), "{p}");
        }
    }

    #[test]
    fn malformed() {
        for p in [
            "/a%00b",
            "/a%zz",
            "/a%2",
            "/a%",
            "/%ff%fe",
            "relative",
            "",
            "/a\0b",
            "/a%0ab",
            "/p.s/app.\0\x10ellod",
        ] {
            assert_eq!(rel(p), Err(Malformed), "{p}");
        }
    }
}
