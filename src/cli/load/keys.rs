//! Which key each operation of a run uses (`--key-dist`, `--seed`).
//!
//! Every choice is a pure function of the operation's index and the seed,
//! so a run repeats exactly and no task shares a random generator.
//! - `sequential` (the default): operation `i` uses key `i mod K`, so a
//!   write run of at least `K` operations writes every key.
//! - `uniform`: every key equally likely.
//! - `zipf[:S]` (S from 0 to below 1, default 0.99): YCSB's scrambled
//!   zipfian. Ranks follow a zipfian law (Gray et al.'s generator, as
//!   YCSB's `ZipfianGenerator`), and each rank is hashed onto the key space
//!   (FNV-1a, as YCSB's `ScrambledZipfianGenerator`), so the hot keys are
//!   spread over it instead of being its first few.
//! - `hotset:F:P`: a fraction `P` of the operations on the first `F × K`
//!   keys (the hot set), the rest on the others, uniformly within each (as
//!   YCSB's `HotspotIntegerGenerator`).

use std::fmt;
use std::str::FromStr;

/// How a run picks its keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// Key `i mod K`.
    Sequential,
    /// Any key, equally likely.
    Uniform,
    /// YCSB's scrambled zipfian with this exponent.
    Zipf(f64),
    /// `probability` of the operations on the first `fraction` of the keys.
    Hotset {
        /// The hot set's share of the key space.
        fraction: f64,
        /// The share of operations that go to it.
        probability: f64,
    },
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::Sequential => f.write_str("sequential"),
            KeyDist::Uniform => f.write_str("uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
            KeyDist::Hotset {
                fraction,
                probability,
            } => write!(f, "hotset:{fraction}:{probability}"),
        }
    }
}

impl FromStr for KeyDist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let number = |what: &str, text: &str, ok: &dyn Fn(f64) -> bool, range: &str| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && ok(*v))
                .ok_or_else(|| format!("{s:?}: the {what} {text:?} is not a number {range}"))
        };
        match parts.as_slice() {
            ["sequential"] => Ok(KeyDist::Sequential),
            ["uniform"] => Ok(KeyDist::Uniform),
            ["zipf"] => Ok(KeyDist::Zipf(0.99)),
            ["zipf", e] => number(
                "exponent",
                e,
                &|v| v > 0.0 && v < 1.0,
                "above 0 and below 1 (YCSB uses 0.99)",
            )
            .map(KeyDist::Zipf),
            ["hotset", f, p] => Ok(KeyDist::Hotset {
                fraction: number(
                    "fraction",
                    f,
                    &|v| v > 0.0 && v < 1.0,
                    "above 0 and below 1",
                )?,
                probability: number(
                    "probability",
                    p,
                    &|v| (0.0..=1.0).contains(&v),
                    "from 0 to 1",
                )?,
            }),
            _ => Err(format!(
                "{s:?} is not a key distribution; expected sequential, uniform, zipf, \
                 zipf:EXPONENT (e.g. zipf:0.99) or hotset:FRACTION:PROBABILITY (e.g. \
                 hotset:0.1:0.9, 90% of operations on 10% of the keys)"
            )),
        }
    }
}

/// The key chooser of one run: a distribution over `keys` keys, with what
/// it needs precomputed once.
pub(super) struct Keys {
    dist: KeyDist,
    keys: u64,
    seed: u64,
    /// The zipfian generator's constants (zipf only).
    zipf: Option<Zipfian>,
}

impl Keys {
    pub(super) fn new(dist: KeyDist, keys: u64, seed: u64) -> Keys {
        let zipf = match dist {
            KeyDist::Zipf(theta) => Some(Zipfian::new(keys, theta)),
            _ => None,
        };
        Keys {
            dist,
            keys,
            seed,
            zipf,
        }
    }

    /// The key index (`0..keys`) of operation `i`.
    pub(super) fn of(&self, i: u64) -> u64 {
        let n = self.keys;
        match self.dist {
            KeyDist::Sequential => i % n,
            KeyDist::Uniform => below(self.uniform(i, 0), n),
            KeyDist::Zipf(_) => {
                let rank = match &self.zipf {
                    Some(z) => z.rank(self.uniform(i, 0)),
                    None => 0,
                };
                fnv1a(rank) % n
            }
            KeyDist::Hotset {
                fraction,
                probability,
            } => {
                // At least one hot key, and at least one cold one when there
                // are two keys or more.
                let hot = ((fraction * n as f64).ceil() as u64)
                    .clamp(1, n.max(2) - 1)
                    .min(n);
                let pick = self.uniform(i, 1);
                if pick < probability || hot == n {
                    below(self.uniform(i, 2), hot)
                } else {
                    hot + below(self.uniform(i, 2), n - hot)
                }
            }
        }
    }

    /// A uniform fraction in [0, 1) for operation `i`, stream `stream`.
    fn uniform(&self, i: u64, stream: u64) -> f64 {
        let x = splitmix64(i ^ splitmix64(self.seed.wrapping_add(stream.wrapping_mul(0x9E37))));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `floor(u × n)`, kept below `n`.
fn below(u: f64, n: u64) -> u64 {
    ((u * n as f64) as u64).min(n.saturating_sub(1))
}

/// SplitMix64's finaliser: a cheap bijective mix.
pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over the 8 bytes of `x`, as YCSB scrambles its zipfian ranks.
fn fnv1a(x: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// Gray et al.'s zipfian generator ("Quickly generating billion-record
/// synthetic databases", SIGMOD 1994), as YCSB's `ZipfianGenerator`: rank
/// 0 is the most frequent, rank `r` about `1 / (r + 1)^theta` as often.
struct Zipfian {
    items: f64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    fn new(items: u64, theta: f64) -> Zipfian {
        // O(items) once per run: a million keys take a few milliseconds.
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(items);
        let zeta2 = zeta(2.min(items));
        let n = items as f64;
        Zipfian {
            items: n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    /// The rank for the uniform fraction `u`.
    fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let r = self.items * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (r as u64).min(self.items as u64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn distinct(dist: KeyDist, keys: u64, ops: u64, seed: u64) -> usize {
        let k = Keys::new(dist, keys, seed);
        (0..ops).map(|i| k.of(i)).collect::<HashSet<_>>().len()
    }

    #[test]
    fn names_parse_with_clear_errors() {
        assert_eq!("sequential".parse::<KeyDist>(), Ok(KeyDist::Sequential));
        assert_eq!("zipf".parse::<KeyDist>(), Ok(KeyDist::Zipf(0.99)));
        assert_eq!("zipf:0.5".parse::<KeyDist>(), Ok(KeyDist::Zipf(0.5)));
        assert_eq!(
            "hotset:0.1:0.9".parse::<KeyDist>(),
            Ok(KeyDist::Hotset {
                fraction: 0.1,
                probability: 0.9
            })
        );
        assert!(
            "zipf:1.2"
                .parse::<KeyDist>()
                .unwrap_err()
                .contains("below 1")
        );
        assert!(
            "hotset:0.1"
                .parse::<KeyDist>()
                .unwrap_err()
                .contains("hotset:FRACTION:PROBABILITY")
        );
        assert!(
            "hotset:2:0.5"
                .parse::<KeyDist>()
                .unwrap_err()
                .contains("fraction")
        );
        assert!("gaussian".parse::<KeyDist>().is_err());
        for d in ["sequential", "uniform", "zipf:0.99", "hotset:0.1:0.9"] {
            assert_eq!(d.parse::<KeyDist>().unwrap().to_string(), d);
        }
    }

    #[test]
    fn sequential_cycles_over_every_key() {
        let k = Keys::new(KeyDist::Sequential, 10, 7);
        assert_eq!(
            (0..12).map(|i| k.of(i)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
        );
    }

    #[test]
    fn uniform_touches_what_the_birthday_formula_says() {
        let (keys, ops) = (10_000u64, 10_000u64);
        let expected = keys as f64 * (1.0 - (-(ops as f64) / keys as f64).exp());
        let seen = distinct(KeyDist::Uniform, keys, ops, 1) as f64;
        assert!(
            (seen - expected).abs() < 0.02 * expected,
            "{seen} vs {expected}"
        );
    }

    #[test]
    fn zipf_touches_far_fewer_keys_and_spreads_the_hot_ones() {
        let (keys, ops) = (10_000u64, 10_000u64);
        let uniform = distinct(KeyDist::Uniform, keys, ops, 1);
        let zipf = distinct(KeyDist::Zipf(0.99), keys, ops, 1);
        assert!(zipf * 2 < uniform, "zipf {zipf} vs uniform {uniform}");
        let k = Keys::new(KeyDist::Zipf(0.99), keys, 1);
        let mut counts = vec![0u32; keys as usize];
        for i in 0..100_000 {
            counts[k.of(i) as usize] += 1;
        }
        let mut by_count: Vec<(u32, usize)> = counts.iter().copied().zip(0..).collect();
        by_count.sort_unstable_by(|a, b| b.cmp(a));
        // The hottest key takes several percent of the operations…
        assert!(by_count[0].0 > 3_000, "{:?}", &by_count[..5]);
        // …and the ten hottest are not the first ten keys.
        assert!(
            by_count[..10].iter().any(|&(_, key)| key >= 10),
            "{:?}",
            &by_count[..10]
        );
    }

    #[test]
    fn hotset_sends_its_share_to_its_keys() {
        let dist = KeyDist::Hotset {
            fraction: 0.1,
            probability: 0.9,
        };
        let k = Keys::new(dist, 1_000, 3);
        let hot = (0..100_000).filter(|&i| k.of(i) < 100).count();
        assert!((88_000..92_000).contains(&hot), "{hot}");
        assert!((0..100_000).all(|i| k.of(i) < 1_000));
    }

    #[test]
    fn a_seed_repeats_a_run_and_another_seed_does_not() {
        for dist in [KeyDist::Uniform, KeyDist::Zipf(0.99)] {
            let a: Vec<u64> = (0..1_000)
                .map(|i| Keys::new(dist, 5_000, 42).of(i))
                .collect();
            let b: Vec<u64> = (0..1_000)
                .map(|i| Keys::new(dist, 5_000, 42).of(i))
                .collect();
            let c: Vec<u64> = (0..1_000)
                .map(|i| Keys::new(dist, 5_000, 43).of(i))
                .collect();
            assert_eq!(a, b, "{dist}");
            assert_ne!(a, c, "{dist}");
        }
    }

    #[test]
    fn one_key_is_always_key_zero() {
        for dist in ["sequential", "uniform", "zipf", "hotset:0.5:0.5"] {
            let k = Keys::new(dist.parse().unwrap(), 1, 9);
            assert!((0..100).all(|i| k.of(i) == 0), "{dist}");
        }
    }
}
