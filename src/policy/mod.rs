//! What to answer: a request in, a response out. `dispatch` runs the request checks,
//! asks `routing`, and has an endpoint, `proxy` or `static_files` answer; `errors` maps
//! every failure to its status in one place.

pub mod colour;
pub mod context;
pub mod dispatch;
pub mod endpoints;
pub mod errors;
pub mod forwarding;
pub mod proxy;
pub mod request_checks;
pub mod routing;
pub mod static_files;
pub mod worker;
