//! The differential check of the upstream side in `cargo test`: generated responses
//! (well-formed, nearly, and the framings a broken app sends), split at random points, read
//! by switchyard's upstream client and by hyper's. switchyard reads the same response, or
//! refuses or cuts it; never a body hyper refuses, never a reuse hyper would not make. The
//! same harness runs under cargo-fuzz (`fuzz/`), with arbitrary bytes.

#[path = "../fuzz/differential/responses.rs"]
mod responses;

use proptest::prelude::*;

fn status() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 404 Not Found",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 304 Not Modified",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
        "HTTP/1.1 200",
        "HTTP/1.1 999 Odd",
        "HTTP/2.0 200 OK",
        "ICY 200 OK",
    ])
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..12).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 5, 5".to_owned()),
        Just("Content-Length: 05".to_owned()),
        Just("Content-Length: -1".to_owned()),
        Just("Content-Length: 5\r\nContent-Length: 6".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just("Transfer-Encoding: gzip, chunked".to_owned()),
        Just("Transfer-Encoding: chunked, gzip".to_owned()),
        Just("Transfer-Encoding: gzip".to_owned()),
        Just("Connection: close".to_owned()),
        Just("Connection: keep-alive".to_owned()),
        Just("Connection: x-private".to_owned()),
        Just("X-Private: secret".to_owned()),
        Just("Keep-Alive: timeout=5".to_owned()),
        Just("Trailer: x".to_owned()),
        Just("Upgrade: h2c".to_owned()),
        Just("X-A: b".to_owned()),
        Just("X-Fold: a\r\n b".to_owned()),
        Just("Bad Header: x".to_owned()),
        Just("Set-Cookie: a=1".to_owned()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"hello".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"5;e=1\r\nhello\r\n0\r\nT: t\r\n\r\n".to_vec()),
        Just(b"5\nhello\n0\n\n".to_vec()),
        Just(b"5\r\nhello\r\n\r\n\r\n".to_vec()),
        Just(b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n".to_vec()),
        Just(b"5 x\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"0\r\nT: \x01\r\n\r\n".to_vec()),
        Just(b"5\r\nhel".to_vec()),
    ]
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    (
        status(),
        prop::collection::vec(header(), 0..4),
        body(),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(status, headers, body, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut out = format!("{status}{eol}").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(eol.as_bytes());
            }
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(&body);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn switchyard_reads_what_hyper_reads_or_less(
        bytes in response(),
        cut in 0usize..80,
        head_request in prop::bool::weighted(0.2),
        closes in any::<bool>(),
    ) {
        let (a, b) = bytes.split_at(cut.min(bytes.len()));
        let pieces: Vec<&[u8]> = [a, b].into_iter().filter(|p| !p.is_empty()).collect();
        let outcome = responses::run(&pieces, head_request, closes);
        if let Err(why) = outcome.verdict() {
            return Err(TestCaseError::fail(format!(
                "{why}\ninput: {:?}",
                String::from_utf8_lossy(&bytes)
            )));
        }
    }
}

/// The harness is not blind: ordinary responses read the same on both sides, and one
/// that would be reused is reused by both.
#[test]
fn the_harness_sees_what_it_should() {
    let ok =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\nhello";
    let outcome = responses::run(&[ok], false, false);
    let (ours, theirs) = (
        outcome.ours.clone().unwrap(),
        outcome.hyper.clone().unwrap(),
    );
    assert_eq!(ours, theirs, "{outcome:#?}");
    assert!(ours.reusable && ours.body.as_deref() == Some(&b"hello"[..]));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let outcome = responses::run(&[&chunked[..20], &chunked[20..]], false, true);
    assert_eq!(outcome.ours, outcome.hyper, "{outcome:#?}");
    let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello";
    let outcome = responses::run(&[cut], false, true);
    assert_eq!(outcome.ours.as_ref().unwrap().body, None, "{outcome:#?}");
    assert_eq!(outcome.hyper.as_ref().unwrap().body, None, "{outcome:#?}");
}

/// Found by the fuzzer: a trailer section with a bare LF inside, which httparse reads as
/// two fields and hyper refuses, must not end a body cleanly.
#[test]
fn trailers_with_a_bare_lf_cut_the_body() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0;\xff\r\nA: c\xffhue\nB: chunked\r\n\r\n";
    let outcome = responses::run(&[input], false, false);
    assert!(outcome.verdict().is_ok(), "{outcome:#?}");
    assert_eq!(outcome.ours.and_then(|r| r.body), None);
}

/// Found by the fuzzer: `Transfer-Encoding: chunked,` ends with an empty coding, so the
/// body is not chunked (hyper reads it until close); switchyard must not decode it.
#[test]
fn a_coding_list_ending_in_an_empty_element_is_not_chunked() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,,\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for closes in [false, true] {
        let outcome = responses::run(&[input], false, closes);
        assert!(outcome.verdict().is_ok(), "{outcome:#?}");
    }
}
