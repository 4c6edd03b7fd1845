//! Whatever bytes a client sends, in whatever pieces, the request-head reader never
//! panics, and never loses or invents a byte: a plain request consumes exactly its head
//! (and is HTTP/1.1, origin-form, bodiless), a hand-over gives back every byte read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::parts::{parse_request as parse, ParsedRequest as Parsed};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else { return };
    let (first, second) = input.split_at((cut as usize).min(input.len()));
    let mut buf = BytesMut::from(first);
    let mut scanned = 0;
    let mut fed = first.len();
    let mut parsed = parse(&mut buf, &mut scanned);
    if matches!(parsed, Parsed::Partial) {
        assert_eq!(&buf[..], first, "a partial head consumed something");
        buf.extend_from_slice(second);
        fed = input.len();
        parsed = parse(&mut buf, &mut scanned);
    }
    let read = &input[..fed];
    match parsed {
        Parsed::Partial => assert_eq!(&buf[..], read),
        Parsed::HandOff { head, .. } => {
            let mut all = head.to_vec();
            all.extend_from_slice(&buf);
            assert_eq!(all, read, "a hand-over lost or changed bytes");
        }
        Parsed::Plain { req, .. } => {
            let consumed = read.len() - buf.len();
            assert!(consumed > 0);
            assert_eq!(&buf[..], &read[consumed..]);
            assert_eq!(req.version(), http::Version::HTTP_11);
            assert!(req.uri().path().starts_with('/'));
            let h = req.headers();
            assert!(!h.contains_key("transfer-encoding") && !h.contains_key("expect"));
            assert!(!h.contains_key("upgrade"));
            assert!(h
                .get_all("content-length")
                .iter()
                .all(|v| v.as_bytes().iter().all(|&b| b == b'0')));
        }
    }
});
