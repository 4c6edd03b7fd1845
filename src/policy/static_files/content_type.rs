//! The Content-Type of a file, from its name (decided once, when the lookup caches the file).

use std::path::Path;

use http::HeaderValue;

/// Content-Type from the extension; text types get `charset=utf-8`. The common types are
/// static strings so the usual response allocates nothing for its type.
pub fn content_type(name: &Path) -> HeaderValue {
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
