//! clearcount: transparent, counter-based telemetry for command-line toolchains.
//!
//! (the full design documentation is written when the engine lands)

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod clock;
pub mod counter;
mod countfile;
pub mod dirs;
pub mod format;
mod fsutil;
pub mod mode;
pub mod name;
mod registry;
pub mod stack;
mod sys;
pub mod telemetry;
pub mod week;

pub use counter::Counter;
pub use stack::StackCounter;
pub use telemetry::{Started, Telemetry};

#[cfg(feature = "report")]
pub mod report;

#[cfg(feature = "report")]
pub mod weekly;

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
