//! Building the response for a file that was found: type, length, validators, caching.

use std::ops::Range;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use super::conditional::{self, choose_encoding, Encoding, RangeDecision};
use super::lookup::FileMeta;
use crate::config::StaticSite;
use crate::http::body::Body;
use crate::http::file_body::FileBody;

/// The response for a file that exists: a precompressed variant when the client accepts
/// one, then 304, 206, 416 or 200 as the request's validators and Range say. `with_body`
/// is false for HEAD, which gets the headers of the full 200.
pub fn file_response(
    file: &FileMeta,
    request: &HeaderMap,
    site: &StaticSite,
    request_path: &str,
    with_body: bool,
) -> Response<Body> {
    let chosen = if file.variants.is_empty() {
        None
    } else {
        let available: Vec<Encoding> = file.encodings().collect();
        choose_encoding(request.get(header::ACCEPT_ENCODING), &available)
    };
    let rep = chosen
        .and_then(|e| file.variants.iter().find(|v| v.encoding == Some(e)))
        .unwrap_or(file);
    let mut res = Response::new(Body::empty());
    representation_headers(res.headers_mut(), file, rep, site, request_path);
    if conditional::not_modified(request, &rep.etag, rep.modified) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return res;
    }
    let decision = match with_body {
        true => conditional::range(request, rep.len, &rep.etag, rep.modified),
        false => RangeDecision::Full,
    };
    let span = match decision {
        RangeDecision::Full => 0..rep.len,
        RangeDecision::Partial(r) => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            set_content_range(
                &mut res,
                &format!("bytes {}-{}/{}", r.start, r.end - 1, rep.len),
            );
            r
        }
        RangeDecision::Unsatisfiable => return unsatisfiable(res, rep.len),
    };
    let length = match span.end - span.start {
        len if len == rep.len => rep.content_length.clone(),
        len => HeaderValue::from(len),
    };
    res.headers_mut().insert(header::CONTENT_LENGTH, length);
    if with_body {
        *res.body_mut() = body(rep, span, site.sendfile);
    }
    res
}

fn representation_headers(
    headers: &mut HeaderMap,
    file: &FileMeta,
    rep: &FileMeta,
    site: &StaticSite,
    request_path: &str,
) {
    headers.insert(header::CONTENT_TYPE, file.content_type.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, rep.etag.clone());
    if let Some(modified) = &rep.last_modified {
        headers.insert(header::LAST_MODIFIED, modified.clone());
    }
    if let Some(enc) = rep.encoding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        );
    }
    if !file.variants.is_empty() {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(rule) = site
        .cache
        .iter()
        .find(|r| request_path.starts_with(&r.path_prefix))
    {
        headers.insert(header::CACHE_CONTROL, rule.cache_control.clone());
    }
}

fn body(rep: &FileMeta, span: Range<u64>, sendfile: bool) -> Body {
    match (&rep.content, &rep.file) {
        (Some(bytes), _) => Body::full(bytes.slice(span.start as usize..span.end as usize)),
        (None, Some(file)) => {
            let body = FileBody::new(Arc::clone(file), span.start, span.end - span.start);
            Body::file(match sendfile {
                true => body.with_sendfile(),
                false => body,
            })
        }
        (None, None) => Body::empty(),
    }
}

fn set_content_range(res: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
}

fn unsatisfiable(mut res: Response<Body>, len: u64) -> Response<Body> {
    *res.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    set_content_range(&mut res, &format!("bytes */{len}"));
    let headers = res.headers_mut();
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    *res.body_mut() = Body::full("416 range not satisfiable\n");
    res
}

/// 301 to the same path with a trailing slash, keeping the query. Leading slashes are
/// collapsed: `//name` must not become the protocol-relative `Location: //name/`.
pub fn redirect_to_slash(path: &str, query: Option<&str>) -> Response<Body> {
    let path = format!("/{}", path.trim_start_matches('/'));
    let location = match query {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    redirect(&location)
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut res = Response::new(Body::full("301 moved permanently\n"));
    *res.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
