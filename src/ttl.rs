//! [`Ttl`]: how long a value lives.

use std::time::Duration;

/// How long a stored value lives.
///
/// ```
/// use objdatakey::Ttl;
/// assert_eq!(Ttl::from_secs(30), Ttl::Seconds(30));
/// assert_eq!(Ttl::default(), Ttl::Default);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ttl {
    /// The configured default, `system.cachettl` (300 s unless set).
    #[default]
    Default,
    /// This many seconds. On Redis and Dragonfly values below 5 are raised to 5
    /// (the original module's minimum); `Seconds(0)` on RocksDB expires at once.
    Seconds(u64),
    /// Never expires.
    Never,
}

impl Ttl {
    /// `Ttl::Seconds(secs)`.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Ttl::Seconds(secs)
    }

    /// Whole seconds of `d`, rounded up so a value never lives shorter than asked.
    #[must_use]
    pub fn from_duration(d: Duration) -> Self {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        Ttl::Seconds(secs)
    }

    /// The lifetime in seconds once the default is known; `None` means never-expire.
    pub(crate) fn resolve(self, default_secs: Option<u64>) -> Option<u64> {
        match self {
            Ttl::Default => default_secs,
            Ttl::Seconds(s) => Some(s),
            Ttl::Never => None,
        }
    }
}

impl From<Duration> for Ttl {
    fn from(d: Duration) -> Self {
        Ttl::from_duration(d)
    }
}

impl std::str::FromStr for Ttl {
    type Err = String;

    /// `never`, `default`, or a whole number of seconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "never" | "none" | "-1" => Ok(Ttl::Never),
            "default" => Ok(Ttl::Default),
            other => other.parse::<u64>().map(Ttl::Seconds).map_err(|_| {
                format!("invalid TTL {other:?}: expected a whole number of seconds, `never` or `default`")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        assert_eq!("never".parse::<Ttl>().unwrap(), Ttl::Never);
        assert_eq!("12".parse::<Ttl>().unwrap(), Ttl::Seconds(12));
        assert!("1.5".parse::<Ttl>().unwrap_err().contains("whole number"));
        assert_eq!(Ttl::Default.resolve(Some(300)), Some(300));
        assert_eq!(Ttl::Never.resolve(Some(300)), None);
        assert_eq!(
            Ttl::from_duration(Duration::from_millis(1500)),
            Ttl::Seconds(2)
        );
    }
}
