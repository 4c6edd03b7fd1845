//! Chunked transfer coding (RFC 9112 7.1), both ways: the size line a decoder reads and
//! the one an encoder writes, for the client side and the upstream side alike.

/// What the start of a buffer held where a chunk-size line was expected.
#[derive(Debug, PartialEq, Eq)]
pub enum SizeLine {
    /// Not a whole line yet.
    Partial,
    /// A chunk of `size` bytes follows the `used` bytes of the line (0: the last chunk).
    Complete {
        used: usize,
        size: u64,
    },
    Invalid,
}

/// Parses `1*HEXDIG [ BWS ";" chunk-ext ] CRLF` (RFC 9112 7.1), as strictly as nginx and
/// hyper together: at least one digit (an empty line is not the last chunk), no sign, no
/// `0x`, no leading space, no size beyond nginx's 2^63 - 1, CRLF only (hyper's rule; a
/// proxy that accepts what its peers refuse invites desync), no control bytes.
pub fn parse_size_line(buf: &[u8]) -> SizeLine {
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return match buf.is_empty() {
            true => SizeLine::Partial,
            false => SizeLine::Invalid,
        };
    }
    // nginx's bound: an off_t (2^63 - 1).
    let size = buf[..digits]
        .iter()
        .try_fold(0u64, |n, &b| n.checked_mul(16)?.checked_add(hex_value(b)));
    let Some(size) = size.filter(|&n| n <= i64::MAX as u64) else {
        return SizeLine::Invalid;
    };
    let rest = &buf[digits..];
    let line_len = rest.iter().position(|&b| b == b'\r' || b == b'\n');
    let Some(line_len) = line_len else {
        return match valid_after_size(rest) && rest.len() < MAX_EXT {
            true => SizeLine::Partial,
            false => SizeLine::Invalid,
        };
    };
    if !valid_after_size(&rest[..line_len]) || line_len >= MAX_EXT {
        return SizeLine::Invalid;
    }
    match &rest[line_len..] {
        [b'\r', b'\n', ..] => SizeLine::Complete {
            used: digits + line_len + 2,
            size,
        },
        [b'\r'] => SizeLine::Partial,
        _ => SizeLine::Invalid,
    }
}

/// What may follow the size on its line: whitespace, then nothing or `;` and extensions.
fn valid_after_size(after: &[u8]) -> bool {
    let ext = after.trim_ascii_start();
    let space_ok = after[..after.len() - ext.len()]
        .iter()
        .all(|&b| b == b' ' || b == b'\t');
    space_ok
        && match ext.first() {
            None => true,
            Some(b';') => ext.iter().all(|&b| is_ext_byte(b)),
            Some(_) => false,
        }
}

/// Longest chunk extension accepted.
const MAX_EXT: usize = 4096;

fn is_ext_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn hex_value(b: u8) -> u64 {
    u64::from(match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    })
}

/// What follows a chunk's data.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEnd {
    Partial,
    /// The CRLF, this many bytes long.
    Complete(usize),
    Invalid,
}

pub fn data_end(buf: &[u8]) -> DataEnd {
    match buf {
        [] | [b'\r'] => DataEnd::Partial,
        [b'\r', b'\n', ..] => DataEnd::Complete(2),
        _ => DataEnd::Invalid,
    }
}

/// The trailer section after the last chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum TrailersEnd {
    Partial,
    /// Well-formed fields (dropped, as hyper drops them for clients that did not ask for
    /// them), ending this many bytes in, just past the empty line.
    Complete(usize),
    Invalid,
}

pub fn trailers_end(buf: &[u8]) -> TrailersEnd {
    if buf.starts_with(b"\r\n") {
        return TrailersEnd::Complete(2);
    }
    if buf == b"\r" {
        return TrailersEnd::Partial;
    }
    let Some(at) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return TrailersEnd::Partial;
    };
    let end = at + 4;
    let section = &buf[..end];
    // CRLF only, as in the size lines; each field a valid name and value (hyper's checks).
    let bare_lf = memchr::memchr_iter(b'\n', section).any(|i| i == 0 || section[i - 1] != b'\r');
    if bare_lf {
        return TrailersEnd::Invalid;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((used, fields))) if used == end => {
            let valid = fields.iter().all(|f| {
                http::HeaderName::from_bytes(f.name.as_bytes()).is_ok()
                    && http::HeaderValue::from_bytes(f.value).is_ok()
            });
            match valid {
                true => TrailersEnd::Complete(end),
                false => TrailersEnd::Invalid,
            }
        }
        _ => TrailersEnd::Invalid,
    }
}

/// hyper's limit on trailer fields.
const MAX_TRAILER_FIELDS: usize = 64;

/// Appends `n` in hex: a chunk-size line's digits.
pub fn put_size(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Finds where a chunked body ends in a stream of bytes, without keeping them: what lets a
/// connection hand exactly one request to hyper and nothing that follows it.
#[derive(Debug, Default)]
pub struct ChunkedEnd {
    state: Track,
    /// The line being read (a size line, the end of a chunk, a trailer line).
    line: Vec<u8>,
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Track {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
    /// Not chunked as this module reads it: nothing more passes (the decoder then sees the
    /// body end early and fails it; it must never read past a body whose end is unknown).
    Broken,
}

impl ChunkedEnd {
    /// How many of `bytes` belong to the body; fewer than all once it has ended.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match self.state {
                Track::Done | Track::Broken => return used,
                Track::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    self.state = match left - take {
                        0 => Track::DataEnd,
                        left => Track::Data(left),
                    };
                }
                Track::Size | Track::DataEnd | Track::Trailers => {
                    let (line_part, ended) = match memchr::memchr(b'\n', rest) {
                        Some(lf) => (&rest[..=lf], true),
                        None => (rest, false),
                    };
                    used += line_part.len();
                    self.line.extend_from_slice(line_part);
                    if self.line.len() > MAX_EXT + 32 {
                        self.state = Track::Broken;
                    } else if ended {
                        self.end_line();
                    }
                }
            }
        }
        used
    }

    #[cfg(test)]
    fn is_done(&self) -> bool {
        self.state == Track::Done
    }

    /// Whether no more bytes belong to the body: it ended, or where it ends is unknown.
    pub fn is_spent(&self) -> bool {
        matches!(self.state, Track::Done | Track::Broken)
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.state = match self.state {
            Track::Size => match parse_size_line(&line) {
                SizeLine::Complete { size: 0, .. } => Track::Trailers,
                SizeLine::Complete { size, .. } => Track::Data(size),
                _ => Track::Broken,
            },
            Track::DataEnd => match data_end(&line) {
                DataEnd::Complete(n) if n == line.len() => Track::Size,
                _ => Track::Broken,
            },
            Track::Trailers if line == b"\r\n" => Track::Done,
            Track::Trailers => {
                self.trailers += line.len();
                match self.trailers > 16 * 1024 {
                    true => Track::Broken,
                    false => Track::Trailers,
                }
            }
            other => other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines_as_strict_as_nginx_and_hyper() {
        let ok = |line: &[u8], used, size| {
            assert_eq!(
                parse_size_line(line),
                SizeLine::Complete { used, size },
                "{line:?}"
            )
        };
        ok(b"5\r\nhello", 3, 5);
        ok(b"A\r\n", 3, 10);
        ok(b"0\r\n\r\n", 3, 0);
        ok(b"5;ext=1\r\n", 9, 5);
        ok(b"5 ;e\r\n", 6, 5);
        ok(b"5 \t\r\n", 5, 5);
        ok(b"0000000000000000001\r\n", 21, 1);
        ok(b"7fffffffffffffff\r\n", 18, u64::MAX >> 1);
        for bad in [
            &b"\r\n"[..],
            b"\n",
            b"5\n",
            b" 5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5x\r\n",
            b"5 x\r\n",
            b"5;a\x01\r\n",
            b"8000000000000000\r\n",
            b"10000000000000000\r\n",
            b"5\r\r\n",
        ] {
            assert_eq!(parse_size_line(bad), SizeLine::Invalid, "{bad:?}");
        }
        assert_eq!(parse_size_line(b""), SizeLine::Partial);
        assert_eq!(parse_size_line(b"5"), SizeLine::Partial);
        assert_eq!(parse_size_line(b"5;a"), SizeLine::Partial);
        assert_eq!(parse_size_line(b"5\r"), SizeLine::Partial);
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_in_any_pieces() {
        let body = b"5;x=1\r\nhello\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let next = b"GET / HTTP/1.1\r\n\r\n";
        let all = [&body[..], &next[..]].concat();
        for piece in 1..all.len() {
            let mut end = ChunkedEnd::default();
            let mut used = 0;
            for chunk in all.chunks(piece) {
                let n = end.feed(chunk);
                used += n;
                if n < chunk.len() {
                    break;
                }
            }
            assert_eq!(used, body.len(), "pieces of {piece}");
            assert!(end.is_done());
        }
        let mut end = ChunkedEnd::default();
        assert_eq!(
            end.feed(b"zz\r\nGET"),
            4,
            "broken: nothing past the bad line"
        );
        assert!(!end.is_done() && end.is_spent());
        assert_eq!(end.feed(b"more"), 0);
    }

    #[test]
    fn line_ends_and_trailers() {
        assert_eq!(data_end(b"\r\n5"), DataEnd::Complete(2));
        assert_eq!(data_end(b"\n"), DataEnd::Invalid);
        assert_eq!(data_end(b"\r"), DataEnd::Partial);
        assert_eq!(data_end(b"xy"), DataEnd::Invalid);
        assert_eq!(trailers_end(b"\r\nGET"), TrailersEnd::Complete(2));
        assert_eq!(trailers_end(b"X: 1\r\n\r\nGET"), TrailersEnd::Complete(8));
        assert_eq!(trailers_end(b"X: 1\r\n"), TrailersEnd::Partial);
        assert_eq!(trailers_end(b"X: \x01\r\n\r\n"), TrailersEnd::Invalid);
        assert_eq!(trailers_end(b"X 1\r\n\r\n"), TrailersEnd::Invalid);
        assert_eq!(trailers_end(b"X: 1\nY: 2\r\n\r\n"), TrailersEnd::Invalid);
        for n in [0usize, 9, 10, 255, 4096, 0x1234_5678, usize::MAX] {
            let mut out = Vec::new();
            put_size(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
        }
    }
}
