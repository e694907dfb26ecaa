//! The one source of randomness: the operating system's, through
//! `getrandom`. Used for the installation's weekday, each report's X, and
//! the names of temporary files.

/// 64 random bits from the operating system. Should it fail (it does not on
/// supported systems), the clock and the process id stand in, which is
/// still good enough for every use here.
pub(crate) fn u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (nanos ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

/// A number drawn uniformly from `[0, 1)`: 53 random bits.
#[cfg(feature = "upload")]
pub(crate) fn unit() -> f64 {
    (u64() >> 11) as f64 / (1u64 << 53) as f64
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
}
