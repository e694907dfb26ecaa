//! The day's token `upload/day-<date>.token`: at most one upload attempt a
//! day per installation, with a lease that lets a crashed attempt be
//! retried.

use super::upload_dir;
use chrono::NaiveDate;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a day's token protects an attempt that has not finished.
pub const LEASE: Duration = Duration::from_secs(600);

pub(super) fn token_path(dir: &Path, day: NaiveDate, k: u32) -> PathBuf {
    let name = if k == 0 {
        format!("day-{day}.token")
    } else {
        format!("day-{day}.token.{k}")
    };
    upload_dir(dir).join(name)
}

pub(super) enum TokenState {
    Free,
    Done,
    Held,
}

pub(super) fn token_state(p: &Path, now: i64) -> TokenState {
    // One read (tokens are a few dozen bytes): this runs at every start.
    match crate::fsutil::read_small(p) {
        Err(_) => TokenState::Free,
        Ok(t) if t.starts_with("done") => TokenState::Done,
        Ok(t) => {
            let taken = t
                .strip_prefix("taken ")
                .and_then(|s| s.trim().parse::<i64>().ok());
            match taken {
                Some(at) if now - at < LEASE.as_secs() as i64 && now >= at => TokenState::Held,
                // Stale (a crashed attempt), or unreadable: free to retry.
                _ => TokenState::Free,
            }
        }
    }
}

/// Tries to take today's token. `None` when today's attempt is done or
/// running elsewhere.
pub(super) fn take_token(dir: &Path) -> Option<PathBuf> {
    let now = crate::clock::now();
    let day = now.date_naive();
    // Fast path: one read, no write.
    if !matches!(
        token_state(&token_path(dir, day, 0), now.timestamp()),
        TokenState::Free
    ) {
        return None;
    }
    std::fs::create_dir_all(upload_dir(dir)).ok()?;
    for k in 0..4 {
        let p = token_path(dir, day, k);
        let text = format!("taken {}\n", now.timestamp());
        match crate::fsutil::create_atomic(&p, text.as_bytes()) {
            Ok(()) => {
                remove_old_tokens(dir, day);
                return Some(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match token_state(&p, now.timestamp()) {
                    TokenState::Free => continue,
                    TokenState::Done | TokenState::Held => return None,
                }
            }
            Err(_) => return None,
        }
    }
    None
}

pub(super) fn finish_token(p: &Path, what: &str) {
    let line: String = what.chars().filter(|c| *c != '\n').take(300).collect();
    let _ = crate::fsutil::replace_atomic(p, format!("done {line}\n").as_bytes());
}

fn remove_old_tokens(dir: &Path, today: NaiveDate) {
    let prefix = format!("day-{today}.");
    if let Ok(entries) = std::fs::read_dir(upload_dir(dir)) {
        for e in entries.filter_map(Result::ok) {
            let n = e.file_name();
            let Some(n) = n.to_str() else { continue };
            if n.starts_with("day-") && n.contains(".token") && !n.starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_once_a_day_and_lease() {
        let dir = tempfile::tempdir().unwrap();
        let t = take_token(dir.path()).unwrap();
        assert!(take_token(dir.path()).is_none(), "held");
        // A stale lease is taken over by a new token.
        std::fs::write(&t, "taken 0\n").unwrap();
        let t2 = take_token(dir.path()).unwrap();
        assert_ne!(t, t2);
        finish_token(&t2, "done");
        assert!(take_token(dir.path()).is_none(), "done today");
    }
}
