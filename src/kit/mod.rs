//! The toolchain integration kit: what a toolchain needs, beyond counting,
//! to adopt clearcount in an afternoon and give its users the same controls
//! everywhere.
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`panic`](mod@panic) | an opt-in panic hook that counts `crash/panic` with the panicking stack | none |
//! | [`crash`] | an opt-in handler that counts the fatal signal that ends the process, `crash/signal:SIGSEGV` …, and (Linux x86-64) keeps its stack for the next run to count as `crash/signal-stack` | none |
//! | [`histogram`] | durations and sizes as bucket counters (`name:<10ms`) | none |
//! | [`notice`] | the first-run notice, once per installation | none |
//! | `flags` | which flags and subcommands were used, never their values | `kit` |
//! | `prompt` | the opt-in prompt: asks once whether to turn uploading on | `kit` |
//! | `subcommand` | `mytool telemetry on\|off\|local\|status\|view\|report\|upload\|clean` | `kit` |
//!
//! `examples/toolchain.rs` uses every helper.
//!
//! ```
//! use clearcount::kit::histogram::Histogram;
//! static BUILD_TIME: Histogram = Histogram::durations_ms("mytool/build-time", &[10, 100, 1000]);
//! clearcount::kit::panic::install(16);
//! BUILD_TIME.record(42);
//! assert_eq!(BUILD_TIME.declaration(), "mytool/build-time:{<10ms,<100ms,<1s,>=1s}");
//! ```

pub mod crash;
pub mod histogram;
pub mod notice;
pub mod panic;

#[cfg(feature = "kit")]
pub mod flags;

#[cfg(feature = "kit")]
pub mod prompt;

#[cfg(feature = "kit")]
pub mod subcommand;

#[cfg(feature = "kit")]
mod commands;
