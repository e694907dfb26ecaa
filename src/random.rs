//! The one source of randomness: the operating system's generator,
//! through `rand` (`rand::rngs::SysRng`), and `rand`'s uniform
//! distributions for the draws: the installation's first weekday (one of
//! seven, without the bias of a remainder), each report's X (uniform in
//! `[0, 1)`), and the names of temporary files.

use rand::RngExt;
use rand::rand_core::TryRng;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

/// The operating system's generator. Should it fail (it does not on
/// supported systems), a stand-in made of the clock, the process id and a
/// counter takes its place, which is still good enough for every use here
/// and, unlike a constant, never stalls a draw that rejects a value.
struct Os;

impl TryRng for Os {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::rngs::SysRng
            .try_next_u64()
            .unwrap_or_else(|_| stand_in()))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dest.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

/// A different value at every call: SplitMix64 over the clock, the process
/// id and a counter.
fn stand_in() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut z = nanos
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ calls.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 random bits (temporary file names).
pub(crate) fn u64() -> u64 {
    Os.random()
}

/// One of the seven weekdays, `0` (Monday) to `6` (Sunday), each as likely.
pub(crate) fn weekday_index() -> u8 {
    Os.random_range(0..7)
}

/// A number drawn uniformly from `[0, 1)`.
#[cfg(feature = "upload")]
pub(crate) fn unit() -> f64 {
    Os.random()
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_differ() {
        let a: Vec<u64> = (0..8).map(|_| super::u64()).collect();
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(b.len(), 8);
    }

    /// Every weekday is drawn, and nothing else (7,000 draws: each day
    /// missing would take odds of about 7 × (6/7)^7000).
    #[test]
    fn weekdays_cover_the_week() {
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[usize::from(super::weekday_index())] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[cfg(feature = "upload")]
    #[test]
    fn x_is_in_the_unit_interval() {
        for _ in 0..1000 {
            let x = super::unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    /// The stand-in never repeats itself from one call to the next.
    #[test]
    fn the_stand_in_varies() {
        let a = super::stand_in();
        let b = super::stand_in();
        assert_ne!(a, b);
    }
}
