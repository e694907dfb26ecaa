//! cli (in progress)

pub mod config_cmd;
pub mod serve_cmd;
