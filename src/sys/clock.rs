//! The wall clock as the engine reads it: [`coarse_now_ms`], the cheapest
//! reading, and [`sleep_until_ms`], an absolute sleep.
//!
//! Linux (and Android) have a fast path for each: `CLOCK_REALTIME_COARSE`,
//! read from the vDSO without a system call, and `clock_nanosleep` with
//! `TIMER_ABSTIME` on `CLOCK_REALTIME`, which ends on time after a suspend
//! or a clock change. Everywhere else, and on Linux too with the
//! `clearcount_fallbacks` cfg (so that CI runs the code other platforms run),
//! the standard library's `SystemTime` and `thread::sleep` do the same
//! work: a few tens of nanoseconds a reading, and a sleep that wakes at
//! least every minute to look at the clock again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest single sleep of the portable fallback: a sleep is measured on a
/// clock that may stop while the machine is suspended, so it wakes this
/// often to read the wall clock again.
const FALLBACK_MAX_SLEEP: Duration = Duration::from_secs(60);

/// Whether the Linux fast paths are used (false where they do not exist
/// and under the `clearcount_fallbacks` cfg).
const FAST: bool =
    cfg!(any(target_os = "linux", target_os = "android")) && !cfg!(clearcount_fallbacks);

/// The wall clock in milliseconds since the Unix epoch, from the cheapest
/// source that has it. On Linux `CLOCK_REALTIME_COARSE` lags the precise
/// clock by at most one timer tick, a few milliseconds.
#[inline]
pub(crate) fn coarse_now_ms() -> u64 {
    if FAST && let Some(ms) = fast::coarse_now_ms() {
        return ms;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sleeps until the wall clock reads `until_ms` (ms since the epoch), or a
/// little earlier; the caller checks the clock again.
pub(crate) fn sleep_until_ms(until_ms: u64) {
    let now = coarse_now_ms();
    if until_ms <= now {
        return;
    }
    if FAST && fast::sleep_until_ms(until_ms) {
        return;
    }
    let left = Duration::from_millis(until_ms - now);
    std::thread::sleep(left.min(FALLBACK_MAX_SLEEP));
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod fast {
    /// `CLOCK_REALTIME_COARSE` in ms; `None` if the call failed.
    #[inline]
    pub(super) fn coarse_now_ms() -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid,
        // exclusive pointer to a local; it has no other effect.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
            return None;
        }
        Some(
            (ts.tv_sec as u64)
                .saturating_mul(1000)
                .saturating_add(ts.tv_nsec as u64 / 1_000_000),
        )
    }

    /// An absolute sleep on `CLOCK_REALTIME`; false if it failed (the
    /// caller then sleeps the portable way).
    pub(super) fn sleep_until_ms(until_ms: u64) -> bool {
        let ts = libc::timespec {
            tv_sec: (until_ms / 1000).min(i64::MAX as u64) as libc::time_t,
            tv_nsec: ((until_ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: clock_nanosleep reads one timespec through a valid
        // pointer and writes nothing (the remaining-time pointer is null,
        // as TIMER_ABSTIME allows); it only blocks this thread.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_REALTIME,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        r == 0 || r == libc::EINTR
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod fast {
    pub(super) fn coarse_now_ms() -> Option<u64> {
        None
    }
    pub(super) fn sleep_until_ms(_until_ms: u64) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn coarse_clock_follows_the_wall_clock() {
        let before = wall();
        let coarse = coarse_now_ms();
        let after = wall();
        // The coarse clock lags by at most a timer tick (a few ms).
        assert!(
            coarse + 50 >= before && coarse <= after,
            "{before} {coarse} {after}"
        );
    }

    #[test]
    fn sleeps_until_the_time_asked() {
        let until = coarse_now_ms() + 30;
        sleep_until_ms(until);
        assert!(
            coarse_now_ms() + 20 >= until,
            "woke long before the time asked"
        );
        sleep_until_ms(0); // in the past: returns at once
    }

    /// The fallback reads the standard clock, so it never lags it (the
    /// coarse clock may, by a tick).
    #[cfg(any(
        clearcount_fallbacks,
        not(any(target_os = "linux", target_os = "android"))
    ))]
    #[test]
    fn the_fallback_is_the_standard_clock() {
        const { assert!(!FAST) };
        let before = wall();
        let now = coarse_now_ms();
        assert!(now >= before && now <= wall(), "{before} {now}");
    }
}
