//! What keeps one client, or many, from taking the server down: the limits
//! of [`Limits`], the per-source upload rate limit, and the budget of upload
//! bytes in flight.
//!
//! # The rate limit keeps no address
//!
//! A source is the client's address (an IPv6 address by its /64 prefix),
//! or, behind a reverse proxy and only when told, the address the proxy
//! puts in [`Limits::client_ip_header`]. The limiter never stores it: it
//! keys a token bucket by the first 64 bits of SHA-256(salt ‖ address),
//! where the salt is 32 random bytes drawn when the server starts and drawn
//! again, with every bucket dropped, when the UTC day changes. The state
//! lives in memory only; nothing about a source is written to disk or
//! printed, and yesterday's keys cannot be matched with today's, nor with
//! an address, once the salt is gone. At most [`MAX_SOURCES`] sources are
//! tracked; past that (after dropping the buckets that are full again) a
//! new source is let through untracked, so that a flood of made-up sources
//! cannot lock out real ones.

use axum::http::{HeaderMap, HeaderName};
use sha2::Digest;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Limits that keep one client, or many, from taking the server down. The
/// defaults suit a server on the public internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (default 2,048). One more is answered
    /// `503` with `Retry-After: 1` and closed; it never waits. Lowered to
    /// fit the process's open-file limit if that is lower.
    pub max_connections: usize,
    /// Upload bytes being received at once, over all uploads (default 32
    /// MiB). An upload counts its `Content-Length`, or 64 KiB without one;
    /// one that does not fit is answered `503` with `Retry-After: 1`.
    pub max_upload_bytes: usize,
    /// Time a client has to send a request's headers (default 10 s). It is
    /// also the longest a kept-alive connection stays open between requests.
    pub header_timeout: Duration,
    /// Time a client has to send an upload's body (default 10 s); then
    /// `408`.
    pub body_timeout: Duration,
    /// A client that takes no byte of a response for this long is
    /// disconnected (default 30 s).
    pub write_timeout: Duration,
    /// Uploads one source may send per minute, on average (default 60; 0:
    /// no limit). Past it the answer is `429` with `Retry-After`.
    pub uploads_per_minute: u32,
    /// Uploads one source may send in a burst (default 60).
    pub upload_burst: u32,
    /// The request header that holds the client's address when a reverse
    /// proxy stands in front (default none: the connection's address).
    /// `X-Forwarded-For` takes the last address of the list (the one the
    /// proxy appended); any other header (`X-Real-IP`, `CF-Connecting-IP`,
    /// ...) one address. Set it only when every request reaches the server
    /// through that proxy, which must overwrite or append the header:
    /// otherwise clients choose their own source.
    pub client_ip_header: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 2048,
            max_upload_bytes: 32 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            uploads_per_minute: 60,
            upload_burst: 60,
            client_ip_header: None,
        }
    }
}

/// Sources tracked at most by the rate limiter (about 40 bytes each).
pub const MAX_SOURCES: usize = 100_000;

/// The address of the client that sent a request (a request extension set
/// by the connection layer). Read by the rate limiter only; never logged.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

/// The source of a request: the connection's address, or the proxy's
/// header when one is configured and holds an address.
pub(crate) fn source(peer: IpAddr, headers: &HeaderMap, header: Option<&HeaderName>) -> IpAddr {
    let Some(name) = header else {
        return peer;
    };
    let forwarded = name.as_str().eq_ignore_ascii_case("x-forwarded-for");
    // With several headers of that name, the proxy's is the last one.
    let Some(value) = headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
    else {
        return peer;
    };
    let candidate = if forwarded {
        value.rsplit(',').next().unwrap_or("")
    } else {
        value
    };
    parse_addr(candidate.trim()).unwrap_or(peer)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`,
/// `[::1]:5678`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(a);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    None
}

/// A token bucket per source, keyed by a salted hash (see the module
/// documentation).
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    state: Mutex<RateState>,
}

struct RateState {
    /// The UTC day (days since 1970) the salt was drawn for.
    day: u64,
    salt: [u8; 32],
    /// Hash of the source → (tokens left, when last updated).
    buckets: HashMap<u64, (f64, Instant)>,
}

impl std::fmt::Debug for RateLimiter {
    /// Shows the settings and how many sources are tracked, never a key or
    /// the salt.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.state.lock().map_or(0, |s| s.buckets.len());
        f.debug_struct("RateLimiter")
            .field("per_sec", &self.per_sec)
            .field("burst", &self.burst)
            .field("sources", &n)
            .finish()
    }
}

fn fresh_salt() -> [u8; 32] {
    let mut salt = [0u8; 32];
    if getrandom::fill(&mut salt).is_err() {
        // No system randomness: a salt from the clock and the process,
        // still never stored anywhere.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!("{}-{}-{:p}", t.as_nanos(), std::process::id(), &salt);
        salt.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes()));
    }
    salt
}

fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// The first 64 bits of SHA-256(salt ‖ address); an IPv6 address counts by
/// its /64 prefix (one subscriber), an IPv4-mapped one as IPv4.
fn source_key(salt: &[u8; 32], addr: IpAddr) -> u64 {
    let mut h = sha2::Sha256::new();
    h.update(salt);
    let v4 = match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    match (v4, addr) {
        (Some(a), _) => {
            h.update([4u8]);
            h.update(a.octets());
        }
        (None, IpAddr::V6(a)) => {
            h.update([6u8]);
            h.update(&a.octets()[..8]);
        }
        (None, IpAddr::V4(_)) => unreachable!("an IPv4 address is always Some above"),
    }
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl RateLimiter {
    /// A limiter for `limits`, or `None` when the limit is off.
    pub(crate) fn new(limits: &Limits) -> Option<RateLimiter> {
        if limits.uploads_per_minute == 0 {
            return None;
        }
        Some(RateLimiter {
            per_sec: f64::from(limits.uploads_per_minute) / 60.0,
            burst: f64::from(limits.upload_burst.max(1)),
            state: Mutex::new(RateState {
                day: utc_day(),
                salt: fresh_salt(),
                buckets: HashMap::new(),
            }),
        })
    }

    /// Takes one token for `source`: `Err(seconds)` to wait when there is
    /// none.
    pub(crate) fn check(&self, source: IpAddr) -> Result<(), u64> {
        self.check_at(source, Instant::now(), utc_day())
    }

    fn check_at(&self, source: IpAddr, now: Instant, day: u64) -> Result<(), u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.day != day {
            // A new day: a new salt, and yesterday's buckets are gone.
            st.day = day;
            st.salt = fresh_salt();
            st.buckets = HashMap::new();
        }
        let key = source_key(&st.salt, source);
        let (per_sec, burst) = (self.per_sec, self.burst);
        let refill = |tokens: f64, last: Instant| {
            (tokens + now.saturating_duration_since(last).as_secs_f64() * per_sec).min(burst)
        };
        if !st.buckets.contains_key(&key) && st.buckets.len() >= MAX_SOURCES {
            // Buckets that are full again tell nothing: drop them.
            st.buckets
                .retain(|_, (tokens, last)| refill(*tokens, *last) < burst);
            if st.buckets.len() >= MAX_SOURCES {
                return Ok(()); // untracked: see the module documentation
            }
        }
        let (tokens, last) = st.buckets.entry(key).or_insert((burst, now));
        let t = refill(*tokens, *last);
        *last = now;
        if t >= 1.0 {
            *tokens = t - 1.0;
            Ok(())
        } else {
            *tokens = t;
            Err(((1.0 - t) / per_sec).ceil().max(1.0) as u64)
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state.lock().map_or(0, |s| s.buckets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&Limits {
            uploads_per_minute: per_minute,
            upload_burst: burst,
            ..Limits::default()
        })
        .unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_and_other_sources_are_apart() {
        let l = limiter(60, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check_at(a, t0, 1), Ok(()));
        }
        assert_eq!(l.check_at(a, t0, 1), Err(1));
        // Another source is not affected.
        assert_eq!(l.check_at(b, t0, 1), Ok(()));
        // One token a second comes back.
        assert_eq!(l.check_at(a, t0 + Duration::from_millis(1100), 1), Ok(()));
        assert!(l.check_at(a, t0 + Duration::from_millis(1200), 1).is_err());
        // A slow rate gives a longer wait.
        let slow = limiter(6, 1);
        assert_eq!(slow.check_at(a, t0, 1), Ok(()));
        assert_eq!(slow.check_at(a, t0, 1), Err(10));
        assert!(
            RateLimiter::new(&Limits {
                uploads_per_minute: 0,
                ..Limits::default()
            })
            .is_none()
        );
    }

    #[test]
    fn the_salt_and_the_buckets_go_when_the_day_changes() {
        let l = limiter(60, 1);
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.check_at(a, t0, 10).is_ok());
        assert!(l.check_at(a, t0, 10).is_err());
        let salt = l.state.lock().unwrap().salt;
        // The next day: a fresh bucket under a new salt.
        assert!(l.check_at(a, t0, 11).is_ok());
        let st = l.state.lock().unwrap();
        assert_ne!(st.salt, salt);
        assert_eq!(st.buckets.len(), 1);
        // The key is a salted hash: not the address, and not the same
        // under another salt.
        let key = *st.buckets.keys().next().unwrap();
        assert_eq!(key, source_key(&st.salt, a));
        assert_ne!(key, source_key(&salt, a));
        drop(st);
        let debug = format!("{l:?}");
        assert!(!debug.contains("198.51") && !debug.contains(&key.to_string()));
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let salt = [7u8; 32];
        let k = |s: &str| source_key(&salt, s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
    }

    #[test]
    fn the_table_is_bounded_and_a_full_one_lets_new_sources_through() {
        let l = limiter(60, 1);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            assert!(l.check_at(a, t0, 1).is_ok());
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        let new: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(l.check_at(new, t0, 1).is_ok());
        assert_eq!(l.tracked(), MAX_SOURCES);
        // Later, full buckets are dropped to make room.
        let later = t0 + Duration::from_secs(5);
        assert!(l.check_at(new, later, 1).is_ok());
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn the_proxy_header_is_read_only_when_configured() {
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.5, 198.51.100.20".parse().unwrap(),
        );
        h.insert("x-real-ip", "[2001:db8::5]:443".parse().unwrap());
        assert_eq!(source(peer, &h, None), peer);
        let xff = HeaderName::from_static("x-forwarded-for");
        assert_eq!(
            source(peer, &h, Some(&xff)),
            "198.51.100.20".parse::<IpAddr>().unwrap()
        );
        let real = HeaderName::from_static("x-real-ip");
        assert_eq!(
            source(peer, &h, Some(&real)),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        // Missing or unreadable: the connection's address.
        let other = HeaderName::from_static("cf-connecting-ip");
        assert_eq!(source(peer, &h, Some(&other)), peer);
        h.insert("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(source(peer, &h, Some(&xff)), peer);
    }
}
