//! cli (in progress)

pub mod config_cmd;
