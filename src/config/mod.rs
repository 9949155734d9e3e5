//! Configuration: the TOML file's shape (`model`), loading it with every problem located
//! (`load`, `problem`), semantic checks (`validate`) and the commented example (`example`).

mod example;
mod load;
mod model;
mod problem;
mod validate;

pub use example::EXAMPLE;
pub use load::{expand, load_file, parse_str};
pub use model::*;
pub use problem::{ConfigError, Problem};

#[cfg(test)]
mod tests;
