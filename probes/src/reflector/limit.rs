//! The reflector's per-source answer limit.
//!
//! A Binding request is one unauthenticated datagram whose source address anyone can forge, and
//! its answer is larger than the request (see [`super::answer_len`]): without a limit a
//! reflector turns a forged stream of requests into a larger stream of answers at the forged
//! source (RFC 8489 §16). The limit is a rate and a burst of answers per source, kept as
//! GCRA (the generic cell rate algorithm: a token bucket that stores one "theoretical arrival
//! time" per source instead of a token count and a timestamp). A request over the limit gets
//! no answer at all; nothing is queued.
//!
//! Memory is fixed when the table is made, whatever the number of sources: a set-associative
//! table ([`WAYS`] entries per set) in shards behind locks. A new source takes a free entry of
//! its set or one whose bucket has refilled (such an entry carries no state). An entry that
//! still owes answers is never replaced, so a flood from many other (forged) sources cannot
//! reset the bucket of the source it is aimed at; when all entries of a set owe answers, a new
//! source in that set gets none until one refills (one interval, 5 ms at the default rate, for
//! a source seen once). Keeping every set of the default table busy that way takes some
//! 13 million forged sources a second. Sets are chosen by a keyed hash (the caller's
//! [`BuildHasher`], seeded per process), so a remote sender cannot aim its addresses at one
//! set.
//!
//! IPv4 sources are limited per address, IPv6 sources per /64: a host's addresses share its
//! /64 (RFC 4291 §2.5.1, 64-bit interface identifiers), so a forger choosing addresses inside a
//! victim's /64 would otherwise get a fresh bucket for each.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// What one bucket covers: an IPv4 address, or an IPv6 /64 (IPv4-mapped IPv6 addresses count
/// as their IPv4 address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl SourceKey {
    /// The bucket `ip` falls in.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => SourceKey::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let (prefix, _) = o.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
                    SourceKey::V6Prefix(*prefix)
                }
            },
        }
    }
}

/// Answers allowed per source: `per_second` sustained, `burst` at once from a full bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRate {
    /// Sustained answers per second (at least 1).
    pub per_second: u32,
    /// Answers a source that has been quiet can get at once (at least 1).
    pub burst: u32,
}

impl SourceRate {
    /// `stunmap serve`'s default: 200 answers per second and a burst of 400 per source. A
    /// diagnostic client (NAT discovery, a lifetime test, a sweep of a few ports) stays far
    /// below it; a forged stream gets at most 200 answers per second at one victim, under
    /// 32 KB/s even with the largest answer (IPv6, RFC 5780, SOFTWARE, FINGERPRINT).
    pub const DEFAULT: SourceRate = SourceRate {
        per_second: 200,
        burst: 400,
    };

    /// Nanoseconds between two answers at the sustained rate.
    fn interval_ns(self) -> u64 {
        (1_000_000_000 / u64::from(self.per_second.max(1))).max(1)
    }

    /// How far ahead of now a source's arrival time may run: the burst.
    fn tolerance_ns(self) -> u64 {
        self.interval_ns()
            .saturating_mul(u64::from(self.burst.max(1) - 1))
    }
}

/// Entries per set of a [`SourceTable`].
pub const WAYS: usize = 4;

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: Option<SourceKey>,
    /// The theoretical arrival time of the next conforming answer, nanoseconds.
    tat: u64,
}

/// A fixed-size table of buckets, [`WAYS`] per set, for one thread at a time.
#[derive(Debug)]
pub struct SourceTable {
    entries: Box<[Entry]>,
    interval: u64,
    tolerance: u64,
}

impl SourceTable {
    /// A table of `sets` sets (at least 1), [`WAYS`] sources each.
    pub fn new(sets: usize, rate: SourceRate) -> Self {
        Self {
            entries: vec![Entry::default(); sets.max(1) * WAYS].into_boxed_slice(),
            interval: rate.interval_ns(),
            tolerance: rate.tolerance_ns(),
        }
    }

    /// Sources the table holds at once.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` may have one more answer at `now` (nanoseconds on a clock that does not
    /// go back); the answer is charged when it may. `hash` picks the set.
    pub fn allow(&mut self, key: SourceKey, hash: u64, now: u64) -> bool {
        let sets = (self.entries.len() / WAYS).max(1);
        let set = (hash % sets as u64) as usize;
        let Some(ways) = self.entries.get_mut(set * WAYS..set * WAYS + WAYS) else {
            return false;
        };
        let index = match ways.iter().position(|e| e.key == Some(key)) {
            Some(i) => i,
            None => {
                // A free entry, else one whose bucket has refilled (it holds no state). When
                // every source of the set still owes answers, the newcomer waits: evicting
                // one would hand it a fresh bucket.
                let Some((i, e)) = ways
                    .iter_mut()
                    .enumerate()
                    .find(|(_, e)| e.key.is_none() || e.tat <= now)
                else {
                    return false;
                };
                *e = Entry {
                    key: Some(key),
                    tat: now,
                };
                i
            }
        };
        let Some(e) = ways.get_mut(index) else {
            return false;
        };
        if e.tat.saturating_sub(now) > self.tolerance {
            return false;
        }
        e.tat = e.tat.max(now).saturating_add(self.interval);
        true
    }
}

/// Shards of a [`SourceLimiter`] (each its own lock).
const SHARDS: usize = 64;

/// The per-source limit shared by all of a server's threads.
#[derive(Debug)]
pub struct SourceLimiter<S> {
    shards: Box<[Mutex<SourceTable>]>,
    hasher: S,
    base: Instant,
    rate: SourceRate,
}

impl<S: BuildHasher> SourceLimiter<S> {
    /// Sources `stunmap serve` tracks at once (about 1.5 MiB of table).
    pub const DEFAULT_SOURCES: usize = 65_536;

    /// Room for about `sources` sources (rounded up to whole sets) at `rate`. `hasher` must
    /// be keyed with a secret (e.g. `std::hash::RandomState`); `base` is the instant the
    /// clock starts from (any instant not after the first `now` given to
    /// [`SourceLimiter::allow`]).
    pub fn new(sources: usize, rate: SourceRate, hasher: S, base: Instant) -> Self {
        let shards = SHARDS.min(sources.div_ceil(WAYS).max(1));
        let sets = sources.div_ceil(WAYS * shards).max(1);
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(SourceTable::new(sets, rate)))
                .collect(),
            hasher,
            base,
            rate,
        }
    }

    /// The rate this limiter enforces.
    pub fn rate(&self) -> SourceRate {
        self.rate
    }

    /// Sources tracked at once.
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).capacity())
            .sum()
    }

    /// Whether a source at `ip` may have one more answer at `now`, charging it if so.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = SourceKey::of(ip);
        let hash = self.hasher.hash_one(key);
        let now =
            u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let shard = (hash % self.shards.len().max(1) as u64) as usize;
        let Some(table) = self.shards.get(shard) else {
            return false;
        };
        table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(key, hash >> 8, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasherDefault;
    use std::hash::DefaultHasher;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    /// An arbitrary base instant (the limiter only compares instants with it).
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn rate(per_second: u32, burst: u32) -> SourceRate {
        SourceRate { per_second, burst }
    }

    fn v4(n: u32) -> SourceKey {
        SourceKey::of(IpAddr::from(n.to_be_bytes()))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut t = SourceTable::new(1, rate(100, 5));
        let k = v4(1);
        let allowed = (0..20).filter(|_| t.allow(k, 0, 0)).count();
        assert_eq!(allowed, 5, "the burst, at one instant");
        // 100/s: one more every 10 ms.
        assert!(!t.allow(k, 0, 9 * MS));
        assert!(t.allow(k, 0, 10 * MS));
        assert!(!t.allow(k, 0, 10 * MS));
        // Over one second at 1 ms steps: 100 answers (±1), never more.
        let mut n = 0;
        for ms in 11..1011 {
            n += u32::from(t.allow(k, 0, ms * MS));
        }
        assert!((99..=101).contains(&n), "{n}");
        // Quiet for a second: the whole burst again, then no more.
        let later = 3000 * MS;
        assert_eq!((0..20).filter(|_| t.allow(k, 0, later)).count(), 5);
    }

    #[test]
    fn sources_do_not_share_a_bucket() {
        let mut t = SourceTable::new(1, rate(1, 2));
        for n in 0..4 {
            assert!(t.allow(v4(n), 0, 0));
            assert!(t.allow(v4(n), 0, 0));
            assert!(!t.allow(v4(n), 0, 0));
        }
    }

    #[test]
    fn a_full_set_turns_newcomers_away_until_an_entry_refills() {
        let mut t = SourceTable::new(1, rate(10, 1));
        for n in 0..WAYS as u32 {
            assert!(t.allow(v4(n), 0, 0));
        }
        assert!(!t.allow(v4(99), 0, 0), "every entry owes an answer");
        // One interval later they have refilled: room again.
        assert!(t.allow(v4(99), 0, 100 * MS));
    }

    #[test]
    fn a_source_at_its_limit_outlives_a_flood_of_others_in_its_set() {
        let mut t = SourceTable::new(1, rate(10, 10));
        let victim = v4(7);
        let mut answered = 0;
        // The victim's forged stream asks 1000 times a second for 10 s, while a million other
        // forged sources, each seen once, land in the same (only) set.
        let mut other = 1_000u32;
        for ms in 0..10_000u64 {
            answered += u32::from(t.allow(victim, 0, ms * MS));
            for _ in 0..100 {
                other += 1;
                t.allow(v4(other), 0, ms * MS);
            }
        }
        // 10/s for 10 s plus the burst: never a fresh bucket.
        assert!(answered <= 10 * 10 + 10 + 1, "{answered}");
        assert!(answered >= 100, "{answered}");
    }

    #[test]
    fn memory_is_fixed_whatever_the_number_of_sources() {
        let limiter = SourceLimiter::new(
            1000,
            rate(1, 1),
            BuildHasherDefault::<DefaultHasher>::default(),
            t0(),
        );
        let cap = limiter.capacity();
        assert!((1000..1000 + SHARDS * WAYS).contains(&cap), "{cap}");
        let t0 = t0();
        for n in 0..200_000u32 {
            let _ = limiter.allow(IpAddr::from(n.to_be_bytes()), t0);
        }
        assert_eq!(limiter.capacity(), cap);
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let plain: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(SourceKey::of(mapped), SourceKey::of(plain));

        let t0 = t0();
        let limiter = SourceLimiter::new(
            64,
            rate(1, 3),
            BuildHasherDefault::<DefaultHasher>::default(),
            t0,
        );
        assert!(limiter.allow(a, t0));
        assert!(limiter.allow(b, t0));
        assert!(limiter.allow(a, t0));
        assert!(!limiter.allow(b, t0), "one bucket for the /64");
        assert!(limiter.allow(c, t0));
        assert!(limiter.allow(a, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let mut t = SourceTable::new(1, rate(u32::MAX, u32::MAX));
        assert!(t.allow(v4(1), 0, u64::MAX - 1));
        assert!(t.allow(v4(1), 0, u64::MAX));
        let mut t = SourceTable::new(1, rate(0, 0));
        assert!(t.allow(v4(1), 0, 0));
        assert!(!t.allow(v4(1), 0, 0));
    }
}
