//! clearcount: transparent, counter-based telemetry for command-line toolchains.
//!
//! (the full design documentation is written when the engine lands)

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod name;

#[cfg(feature = "report")]
pub mod report;

#[cfg(feature = "config")]
pub mod config;

#[cfg(any(feature = "sign", feature = "upload", feature = "server"))]
pub mod sign;

#[cfg(feature = "upload")]
pub mod upload;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "cli")]
pub mod cli;
