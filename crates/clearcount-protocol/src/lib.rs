//! What clearcount clients and its collection server agree on.
//!
//! | module | what | normative text | feature |
//! |---|---|---|---|
//! | [`name`] | the counter name grammar and bucket sets | `counters-spec/naming.md` | none |
//! | [`field`] | the one spelling of a day (`YYYY-MM-DD`) and of a metadata value | `counters-spec/report.md` | none |
//! | `report` | the weekly report (JSON): types, canonical bytes, checks | `counters-spec/report.md` | `report` |
//! | `json` | a small strict JSON reader and writer (the report's, and the client's small files) | RFC 8259 | `report` |
//! | `config` | the collection config and the declared counters (TOML) | `counters-spec/config.md` | `config` |
//! | `sign` | minisign verification of a config; key generation and signing | `counters-spec/config.md` | `verify`, `sign` |
//! | `tlog` | the config transparency log: Merkle proofs, C2SP signed notes, checkpoints, cosignatures, policies; the client's rules; publishing, witnessing, auditing | `counters-spec/config-log.md` | `tlog-verify`, `tlog-sign` |
//!
//! The counting library (`clearcount`) uses [`name`] and [`field`] always,
//! and the rest when it builds, filters and uploads reports; the server
//! (`clearcount-server`) and the `clearcount` command use all of it. Nothing
//! here does I/O except reading key files in `sign` and the log and
//! witness directories of `tlog` (feature `tlog-sign`).

#![warn(missing_docs)]

pub mod field;
pub mod name;

#[cfg(feature = "report")]
pub mod json;
#[cfg(all(test, feature = "report"))]
mod json_props;

#[cfg(feature = "report")]
pub mod report;

#[cfg(feature = "config")]
pub mod config;

#[cfg(feature = "verify")]
pub mod sign;

#[cfg(feature = "tlog-verify")]
pub mod tlog;
