//! Starting a background child (the upload child, the crash stack namer)
//! so that the host's terminal does not reach it: a Ctrl-C meant for the
//! host's job must not cut its work in half, and the child must not hold
//! the host's console.
//!
//! * unix: the child gets a process group of its own
//!   (`CommandExt::process_group(0)`), so the terminal's SIGINT, sent to the
//!   foreground group, misses it.
//! * Windows: `CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS` (Microsoft's
//!   "Process Creation Flags"): a console's Ctrl-C goes to the processes
//!   attached to it, and a detached process has no console; a new group
//!   also ignores Ctrl-C by default.

use std::process::{Command, Stdio};

/// Starts `cmd` in the background: no standard input or output, detached
/// from the host's terminal ([`detach`]), reaped by a thread if the host
/// lives longer, never waited for at exit. Nothing happens if it cannot
/// start.
pub(crate) fn spawn_background(mut cmd: Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut cmd);
    if let Ok(mut child) = cmd.spawn() {
        let _ = std::thread::Builder::new()
            .name("clearcount-reap".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// Sets up `cmd` to start detached from the host's terminal or console.
pub(crate) fn detach(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        use windows_sys::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, DETACHED_PROCESS};
        cmd.creation_flags(CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = cmd;
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_detached_child_has_its_own_process_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ps -o pgid= -p $$"]);
        detach(&mut cmd);
        let out = cmd
            .output()
            .expect("`ps` is needed: apt-get install procps");
        let pgid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let own = Command::new("sh")
            .args(["-c", "ps -o pgid= -p $$"])
            .output()
            .unwrap();
        let own: u32 = String::from_utf8_lossy(&own.stdout).trim().parse().unwrap();
        assert_ne!(pgid, own, "the child left the parent's group");
    }
}
