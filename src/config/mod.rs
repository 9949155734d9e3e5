//! Configuration: the file's shape (`model`), reading it section by section with every problem
//! located (`load`, `reader`, `source`, `problem`), the checks (`validate`, `check`) and the
//! commented example (`example`). Connection kinds define and check their own settings
//! (`connectors/<kind>/config.rs`) through `SectionReader` and `Check`.

mod example;
mod load;
mod model;
mod route;
mod validate;

pub use example::EXAMPLE;
pub use load::{load_file, parse_str};
pub use model::*;

#[cfg(test)]
mod tests;
