//! Request smuggling defence: notices a request head that carries both Content-Length and
//! Transfer-Encoding, on the raw bytes.
//!
//! hyper resolves that conflict the standard way (chunked wins, Content-Length is dropped,
//! the connection is closed after the response), which defeats smuggling through
//! switchyard, but it hides the conflict from the service, and SPEC wants such a request
//! refused (400), never forwarded. So the connection's reader runs this tiny automaton over
//! the bytes of each request head: header names are matched at line starts, without
//! buffering or allocating, until the empty line that ends the head.
//!
//! Limit: only heads that begin after the connection went idle are scanned; a request
//! pipelined behind another in the same read is left to hyper's resolution above.

const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";

#[derive(Default)]
pub struct HeadScan {
    scanning: bool,
    /// httparse skips empty lines before the request line; so must the scan.
    seen_request_line: bool,
    line_pos: usize,
    cl_alive: bool,
    te_alive: bool,
    saw_cl: bool,
    saw_te: bool,
}

impl HeadScan {
    /// A new request head begins.
    pub fn start(&mut self) {
        *self = HeadScan {
            scanning: true,
            ..HeadScan::default()
        };
    }

    /// Feeds bytes; returns `Some(conflict)` when the head ended within them.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<bool> {
        if !self.scanning {
            return None;
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.line_pos > 0 && !self.cl_alive && !self.te_alive {
                // Nothing left to match on this line: jump to its end.
                match bytes[i..].iter().position(|&b| b == b'\n') {
                    Some(p) => i += p,
                    None => return None,
                }
            }
            let b = bytes[i];
            i += 1;
            match b {
                b'\r' => {}
                b'\n' if self.line_pos == 0 && !self.seen_request_line => {}
                b'\n' if self.line_pos == 0 => {
                    self.scanning = false;
                    return Some(self.saw_cl && self.saw_te);
                }
                b'\n' => self.new_line(),
                _ => self.advance(b.to_ascii_lowercase()),
            }
        }
        None
    }

    fn new_line(&mut self) {
        self.seen_request_line = true;
        self.line_pos = 0;
        self.cl_alive = true;
        self.te_alive = true;
    }

    fn advance(&mut self, b: u8) {
        let pos = self.line_pos;
        self.line_pos += 1;
        Self::step(&mut self.cl_alive, &mut self.saw_cl, CONTENT_LENGTH, pos, b);
        Self::step(
            &mut self.te_alive,
            &mut self.saw_te,
            TRANSFER_ENCODING,
            pos,
            b,
        );
    }

    fn step(alive: &mut bool, saw: &mut bool, name: &[u8], pos: usize, b: u8) {
        if !*alive {
            return;
        }
        match name.get(pos) {
            Some(&want) if want == b => {
                if pos + 1 == name.len() {
                    *saw = true;
                    *alive = false;
                }
            }
            _ => *alive = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<bool> {
        let mut s = HeadScan::default();
        s.start();
        chunks.iter().find_map(|c| s.feed(c))
    }

    #[test]
    fn finds_both_headers_across_reads() {
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\nbody";
        assert_eq!(scan(&[head]), Some(true));
        let (a, b) = head.split_at(35);
        assert_eq!(scan(&[a, b]), Some(true));
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert_eq!(scan(&bytes), Some(true));
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-LENGTH: 3\r\n\r\n"]),
            Some(true)
        );
    }

    #[test]
    fn one_of_them_or_lookalikes_is_fine() {
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n"]),
            Some(false)
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]),
            Some(false)
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nX-Content-Length: 1\r\nX: transfer-encoding: a\r\n\r\n"]),
            Some(false)
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), None);
    }
}
