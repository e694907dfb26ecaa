//! The background work: a detached child process (the default) or a thread
//! of the host, bounded in time, that runs the uploader once and marks the
//! day's token done.

use super::token::{finish_token, token_path};
use super::{RunOptions, UploadSettings, run};
use crate::mode::Mode;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable that marks the background upload child; its
/// value is the namespace.
pub const CHILD_VAR: &str = "CLEARCOUNT_UPLOAD_CHILD";
/// The environment variable that tells the child which token to mark done.
pub const TOKEN_VAR: &str = "CLEARCOUNT_UPLOAD_TOKEN";
/// The only argument the upload child is started with.
pub const CHILD_ARG: &str = "clearcount_upload_child";

pub(super) fn spawn_child(ns: &str, token: &Path) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(CHILD_ARG).env(CHILD_VAR, ns).env(TOKEN_VAR, token);
    // Detached from the host's terminal: a Ctrl-C meant for the host's job
    // does not cut an upload in half.
    crate::sys::process::spawn_background(cmd);
}

/// In the child: do the work, bounded in time, then exit the process.
pub(super) fn child_main(t: &crate::Telemetry, s: &crate::Started) -> ! {
    let limit = t
        .upload
        .as_ref()
        .map(|u| u.child_limit)
        .unwrap_or(Duration::from_secs(60));
    let _ = std::thread::Builder::new()
        .name("clearcount-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            std::process::exit(3);
        });
    let token = std::env::var_os(TOKEN_VAR).map(PathBuf::from);
    if s.mode != Mode::Off
        && let Some(dir) = &s.dir
    {
        let token = token.unwrap_or_else(|| token_path(dir, crate::clock::today(), 0));
        background_work(&t.namespace, dir, t.upload.as_ref(), &token);
    }
    std::process::exit(0)
}

pub(super) fn background_work(ns: &str, dir: &Path, s: Option<&UploadSettings>, token: &Path) {
    let limit = s.map(|s| s.child_limit).unwrap_or(Duration::from_secs(60));
    // Leave time for the last request to finish within the limit.
    let total = s.map(|s| s.total_timeout).unwrap_or_default();
    let deadline = Instant::now() + limit.saturating_sub(total + Duration::from_secs(1));
    let eff = crate::mode::effective(ns, Some(dir), Mode::Local);
    let r = run(
        dir,
        s,
        &eff,
        RunOptions {
            dry_run: false,
            deadline: Some(deadline),
        },
    );
    finish_token(token, &r.summary);
}
