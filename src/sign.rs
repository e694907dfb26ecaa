//! sign (in progress)
