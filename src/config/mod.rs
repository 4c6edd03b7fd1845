//! Configuration: the raw serde model of the TOML file (`raw`), its validation (`validate`)
//! into an immutable `Config` (`model`), and errors that point at line and column.

mod canary;
mod error;
mod model;
mod raw;
mod settings;
mod summary;
mod units;
mod validate;

pub use error::ConfigError;
pub use model::*;
pub use summary::summary;
pub use units::{parse_duration, parse_size};
pub use validate::{digest, load, parse};
