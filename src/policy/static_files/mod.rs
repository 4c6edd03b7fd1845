//! Serving the web root: `security` decodes and vets the request path, `lookup` finds
//! and opens the file off the runtime, `reply` builds the response, `stream` streams
//! large bodies, sent from the page cache without a copy when `sys::page_cache` finds them there.

pub mod cache;
mod conditional;
mod content_type;
mod lookup;
mod reply;
mod security;

use std::sync::Arc;

use http::{Method, Request, Response};

pub use cache::FileCache;
pub use lookup::{lookup, Found, Options};
pub use reply::redirect_to_slash;
pub use security::{sanitize, PathRejection, SafePath};

use crate::http::body::Body;
use crate::policy::errors::RequestError;
use crate::state::snapshot::Snapshot;

/// What the web root says about a request.
pub enum Outcome {
    Response(Response<Body>),
    /// No file claims this path: `fallback` decides.
    NotHere,
}

/// Looks `req` up under the web root.
pub async fn serve<B>(
    req: &Request<B>,
    snap: &Arc<Snapshot>,
    cache: &FileCache,
) -> Result<Outcome, RequestError> {
    if snap.config.static_files.is_none() {
        return Ok(Outcome::NotHere);
    }
    let path = req.uri().path();
    let safe = sanitize(path).map_err(|r| match r {
        PathRejection::Malformed => RequestError::BadPath,
        PathRejection::Forbidden => RequestError::NotFound,
    })?;
    let found = cached_find(snap, cache, path, safe).await?;
    respond(req, snap, found)
}

/// Serves the root index whatever the path (the single-page-app fallback).
pub async fn serve_index<B>(
    req: &Request<B>,
    snap: &Arc<Snapshot>,
    cache: &FileCache,
) -> Result<Outcome, RequestError> {
    let root = SafePath {
        relative: "".into(),
        trailing_slash: true,
    };
    let found = cached_find(snap, cache, "/", root).await?;
    respond(req, snap, found)
}

/// What the web root says about `safe` (requested as `key`): from the cache when fresh,
/// else looked up off the runtime and remembered.
async fn cached_find(
    snap: &Arc<Snapshot>,
    cache: &FileCache,
    key: &str,
    safe: SafePath<'_>,
) -> Result<Found, RequestError> {
    if let Some(found) = cache.get(key, snap.generation) {
        return Ok(found);
    }
    match find(snap, safe.relative.into_owned(), safe.trailing_slash).await {
        Ok(found) => {
            cache.insert(key, snap.generation, &found);
            Ok(found)
        }
        Err(e) => {
            // Not the old answer for another second (`get` re-armed it for this lookup).
            cache.forget(key);
            Err(e)
        }
    }
}

async fn find(
    snap: &Arc<Snapshot>,
    relative: String,
    trailing_slash: bool,
) -> Result<Found, RequestError> {
    let snap = Arc::clone(snap);
    let task = tokio::task::spawn_blocking(move || {
        let Some(site) = snap.config.static_files.as_ref() else {
            return Ok(Found::Nothing);
        };
        let safe = SafePath {
            relative: relative.into(),
            trailing_slash,
        };
        let opts = Options {
            index: &site.index,
            precompressed: site.precompressed,
        };
        lookup(&site.root, &safe, &opts)
    });
    task.await
        .map_err(|e| RequestError::Internal(format!("file lookup task failed: {e}")))?
        .map_err(|e| RequestError::Internal(format!("file lookup failed: {e}")))
}

fn respond<B>(req: &Request<B>, snap: &Snapshot, found: Found) -> Result<Outcome, RequestError> {
    let Some(site) = snap.config.static_files.as_ref() else {
        return Ok(Outcome::NotHere);
    };
    let response = match found {
        Found::Nothing => return Ok(Outcome::NotHere),
        Found::Forbidden => return Err(RequestError::NotFound),
        _ if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            return Err(RequestError::MethodNotAllowed)
        }
        Found::DirectoryWithoutSlash => redirect_to_slash(req.uri().path(), req.uri().query()),
        Found::File(file) => {
            let with_body = req.method() == Method::GET;
            reply::file_response(&file, req.headers(), site, req.uri().path(), with_body)
        }
    };
    Ok(Outcome::Response(response))
}
