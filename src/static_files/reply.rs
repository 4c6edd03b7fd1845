//! Building the response for a file that was found: type, length, validators, caching.

use std::path::Path;

use http::{header, HeaderValue, Response, StatusCode};

use super::lookup::FileMeta;
use super::stream::FileBody;
use crate::body::Body;
use crate::config::StaticSite;

/// 200 with the file's headers; the body only when `with_body` (not for HEAD).
pub fn file_response(
    file: &FileMeta,
    site: &StaticSite,
    request_path: &str,
    with_body: bool,
) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, file.content_type.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.len));
    if let Some(modified) = &file.last_modified {
        headers.insert(header::LAST_MODIFIED, modified.clone());
    }
    if let Some(rule) = site
        .cache
        .iter()
        .find(|r| request_path.starts_with(&r.path_prefix))
    {
        headers.insert(header::CACHE_CONTROL, rule.cache_control.clone());
    }
    if with_body {
        *res.body_mut() = match &file.content {
            Some(bytes) => Body::Full(Some(bytes.clone())),
            None => Body::File(FileBody::new(file.path.clone(), file.len)),
        };
    }
    res
}

/// 301 to the same path with a trailing slash, keeping the query.
pub fn redirect_to_slash(path: &str, query: Option<&str>) -> Response<Body> {
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

/// Content-Type from the extension; text types get `charset=utf-8`. The common types are
/// static strings so the usual response allocates nothing for its type.
pub(super) fn content_type(name: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let with_charset = match mime {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        "text/javascript" | "application/javascript" => "text/javascript; charset=utf-8",
        "application/json" => "application/json; charset=utf-8",
        "text/plain" => "text/plain; charset=utf-8",
        "image/svg+xml" => "image/svg+xml; charset=utf-8",
        "application/xml" | "text/xml" => "application/xml; charset=utf-8",
        other if other.starts_with("text/") => {
            return HeaderValue::from_str(&format!("{other}; charset=utf-8"))
                .unwrap_or_else(|_| HeaderValue::from_static("text/plain; charset=utf-8"))
        }
        other => other,
    };
    HeaderValue::from_static(with_charset)
}
