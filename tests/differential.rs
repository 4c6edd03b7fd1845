//! The differential check of the HTTP edge in `cargo test`: a few thousand generated
//! request streams (well-formed, nearly well-formed, and smuggling shapes), split at random
//! points, through switchyard's connection loop and through hyper alone. switchyard must
//! hand the application exactly hyper's requests, or a prefix of them (stricter), never
//! more or different ones. The same harness runs under cargo-fuzz (`fuzz/`), with
//! arbitrary bytes, for millions of executions.

#[path = "../fuzz/differential/requests.rs"]
mod requests;

use proptest::prelude::*;

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "get",
        "G ET",
    ])
}

fn target() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/",
        "/a?b=1",
        "/api/x",
        "*",
        "http://h.example/p",
        "h.example:443",
        "/a b",
        "/%2e%2e/x",
        "/..;/x",
        "//x",
    ])
}

fn version() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2",
    ])
}

/// A header line without its line end; bodies are chosen to agree with some of them.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: h.example".to_owned()),
        Just("Host: h.example".to_owned()),
        Just("Host:".to_owned()),
        (0u32..40).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 005".to_owned()),
        Just("Content-Length: +5".to_owned()),
        Just("Content-Length: 5, 5".to_owned()),
        Just("Content-Length:  5 ".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just("Transfer-Encoding: Chunked".to_owned()),
        Just("Transfer-Encoding: gzip, chunked".to_owned()),
        Just("Transfer-Encoding: chunked, gzip".to_owned()),
        Just("Transfer-Encoding: xchunked".to_owned()),
        Just("Transfer-Encoding:\tchunked".to_owned()),
        Just(" Transfer-Encoding: chunked".to_owned()),
        Just("Transfer-Encoding : chunked".to_owned()),
        Just("Expect: 100-continue".to_owned()),
        Just("Connection: close".to_owned()),
        Just("Connection: keep-alive, Upgrade".to_owned()),
        Just("Upgrade: websocket".to_owned()),
        Just("Upgrade: h2c".to_owned()),
        Just("X_Forwarded_For: 6.6.6.6".to_owned()),
        Just("X-A: b".to_owned()),
        Just("X-A: b\r\n c".to_owned()),
        Just("Bad Header: x".to_owned()),
        Just("X-Nul: a\u{0}b".to_owned()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..24),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n".to_vec()),
        Just(b"5\nhello\n0\n\n".to_vec()),
        Just(b"0005\r\nhello\r\n0\r\n\r\n".to_vec()),
        Just(b"5\r\nhello\r\n\r\n\r\n".to_vec()),
        Just(b"ffffffffffffffffff\r\n".to_vec()),
        Just(b"3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
        Just(b"hello".to_vec()),
        Just(b"0\r\nT: \x01\r\n\r\n".to_vec()),
        Just(b"0\r\nT: t\r\n".to_vec()),
    ]
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        target(),
        version(),
        prop::collection::vec(header(), 0..5),
        body(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(m, t, v, headers, body, crlf)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut out = format!("{m} {t} {v}{eol}").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(eol.as_bytes());
            }
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(&body);
            out
        })
}

fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (
        prop::collection::vec(request(), 1..4),
        prop::collection::vec(1usize..64, 0..6),
    )
        .prop_map(|(requests, cuts)| (requests.concat(), cuts))
}

fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(cut.min(rest.len()));
        out.push(a);
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn switchyard_hands_over_what_hyper_would_or_less((bytes, cuts) in stream()) {
        let outcome = requests::run(&pieces(&bytes, &cuts));
        if let Err(why) = outcome.verdict() {
            return Err(TestCaseError::fail(format!(
                "{why}\ninput: {:?}",
                String::from_utf8_lossy(&bytes)
            )));
        }
    }
}

/// The harness is not blind: a well-formed stream gives the same requests on both sides,
/// and the smuggling shapes switchyard refuses leave it with fewer.
#[test]
fn the_harness_sees_what_it_should() {
    let plain = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    let outcome = requests::run(&[plain]);
    assert_eq!(outcome.ours.len(), 3, "{outcome:#?}");
    assert_eq!(outcome.ours, outcome.hyper);
    assert_eq!(outcome.ours[1].body.as_deref(), Some(&b"hello"[..]));
    let smuggle = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let outcome = requests::run(&[smuggle]);
    assert!(outcome.ours.is_empty(), "{outcome:#?}");
    assert!(!outcome.hyper.is_empty(), "hyper accepts it (chunked wins)");
    assert!(outcome.verdict().is_ok());
    let bytewise: Vec<&[u8]> = plain.chunks(1).collect();
    let outcome = requests::run(&bytewise);
    assert_eq!(outcome.ours.len(), 3);
    assert!(outcome.verdict().is_ok());
}

/// Found by the fuzzer: a chunked body hyper refuses (a control byte in a trailer) ends
/// the connection; what follows it is never taken for a request.
#[test]
fn a_body_hyper_refuses_ends_the_connection() {
    let input = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=1\r\nhello\r\n0\r\nT: \x01\x02od\r\n\r\nGET /n HTTP/1.1\r\nHost: h\r\n\r\n";
    let outcome = requests::run(&[input]);
    assert!(outcome.verdict().is_ok(), "{outcome:#?}");
    assert!(
        outcome.ours.iter().all(|m| m.target != "/n"),
        "{outcome:#?}"
    );
}

/// Found by the fuzzer: trailers that neither side can finish (a bare LF before the
/// empty line) once left switchyard waiting for bytes hyper had been denied.
#[test]
fn trailers_that_never_end_do_not_hang() {
    let input = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: PUT /x HTPRI ** Hn HTTP/1.1\r\nHost\xc8\xdf\x97\xf2\n\r\n";
    let pieces: [&[u8]; 3] = [&input[..16], &input[16..48], &input[48..]];
    let outcome = requests::run(&pieces);
    assert!(outcome.verdict().is_ok(), "{outcome:#?}");
}

/// Found by the fuzzer: a repeated `Content-Length: 0` is kept once, as hyper keeps it.
#[test]
fn a_repeated_zero_length_is_kept_once() {
    let input = b"GET /b HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nX: h\r\nContent-Length: 0\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    let outcome = requests::run(&[input]);
    assert!(outcome.verdict().is_ok(), "{outcome:#?}");
    assert_eq!(outcome.ours.len(), 2, "{outcome:#?}");
}
