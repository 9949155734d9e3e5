//! Configuration: the file's shape (`model`), reading it section by section with every problem
//! located (`load`, `reader`, `source`, `problem`), the checks (`validate`, `check`) and the
//! commented example (`example`). Connection kinds define and check their own settings
//! (`connectors/<kind>/config.rs`) through `SectionReader` and `Check`.

mod check;
mod example;
mod load;
mod model;
mod problem;
mod reader;
mod route;
mod source;
mod validate;

pub use check::Check;
pub use example::EXAMPLE;
pub use load::{load_file, parse_str};
pub use model::*;
pub use problem::{ConfigError, Problem};
pub use reader::{expand, struct_fields, SectionReader};
pub use source::Value;

#[cfg(test)]
mod tests;
