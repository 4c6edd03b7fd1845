//! Serving: listeners, one worker thread per core, the accept loops and connections
//! handed between workers, and `respond`, which loads the snapshot once per request and
//! reports the request when its response is done.

pub mod accept;
pub mod balance;
pub mod listeners;
pub mod reporting;
pub mod respond;
pub mod workers;
