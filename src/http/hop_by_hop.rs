//! Hop-by-hop headers (RFC 9110 7.6.1): the fixed ones and those a `Connection` header
//! names stay on their own hop, in both directions.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::http::head::{classify, elements_of, names_a_header};

/// Whether `name` is one of the fixed hop-by-hop headers (see `classify`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    classify(name.as_str().as_bytes()).is_hop_by_hop()
}

/// End-to-end headers a client must not be able to delete by naming them in
/// `Connection`: the ones switchyard vouches for, and the message's own framing and host.
fn protected(name: &str) -> bool {
    [
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
        "forwarded",
    ]
    .iter()
    .any(|p| name.eq_ignore_ascii_case(p))
}

/// Removes the headers a `Connection` value names, except `protected` ones.
pub fn remove_listed(headers: &mut HeaderMap, value: &HeaderValue) {
    for name in elements(value).filter(|e| names_a_header(e)) {
        match std::str::from_utf8(name) {
            Ok(name) if !protected(name) => {
                headers.remove(name);
            }
            _ => {}
        }
    }
}

/// The comma-separated elements of one header value, trimmed (RFC 9110 5.6.1). Byte-wise:
/// these run several times per request, and `str::split` costs more than the work.
pub fn elements(value: &HeaderValue) -> impl DoubleEndedIterator<Item = &[u8]> {
    elements_of(value.as_bytes())
}

/// The elements of every value of `name`.
pub fn list<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl DoubleEndedIterator<Item = &'a [u8]> {
    headers.get_all(name).iter().flat_map(elements)
}

/// Whether the list header `name` has the element `token` (case-insensitive).
pub fn has_element(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Removes the headers a request's `Connection` header names (rare; the fixed hop-by-hop
/// ones are left out by `Forwarding::passes`).
pub fn strip_connection_listed(headers: &mut HeaderMap) {
    if !list(headers, &header::CONNECTION).any(names_a_header) {
        return;
    }
    let values: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for value in &values {
        remove_listed(headers, value);
    }
}
