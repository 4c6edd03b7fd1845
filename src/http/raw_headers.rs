//! Upstream response headers relayed as lines.

/// Response header lines in wire form (`name: value\r\n`), neither framing nor hop-by-hop
/// headers among them: what the proxy relays from an upstream's head. Building a header
/// map from it only to write the map out again would cost more than relaying the response
/// itself (`benches/README.md`); `response` writes these lines as they are (names keep the upstream's
/// case, as nginx relays them), and hyper, which needs a map, gets one (`into_map`).
#[derive(Debug, Default)]
pub struct RawHeaders {
    lines: Vec<u8>,
    has_date: bool,
}

impl RawHeaders {
    pub fn with_capacity(bytes: usize) -> Self {
        RawHeaders {
            lines: Vec::with_capacity(bytes),
            has_date: false,
        }
    }

    /// Adds a header httparse has already validated.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.has_date |= name.eq_ignore_ascii_case(b"date");
        self.lines.extend_from_slice(name);
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// The lines as they go on the wire.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// Appends the headers to `map` (for a response hyper writes).
    pub fn into_map(self, map: &mut http::HeaderMap) {
        for line in self.lines.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let name = http::HeaderName::from_bytes(name);
            let value = http::HeaderValue::from_bytes(value.trim_ascii());
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
    }
}
