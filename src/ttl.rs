//! Token lifetimes: `"90s"`, `"15m"`, `"1h"`, `"1d"` or whole seconds, from one second to a year.

use std::fmt;

use serde::Deserialize;

/// The longest lifetime accepted: the official SDKs' default, which this helper exists to avoid.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

/// A validated token lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(u64);

/// Why a lifetime was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// Not a number with an optional unit.
    #[error("invalid ttl {0:?}: write whole seconds or a number with s, m, h or d, e.g. \"15m\"")]
    Syntax(String),
    /// Zero seconds.
    #[error("ttl must be at least one second")]
    Zero,
    /// More than a year.
    #[error("ttl {0:?} is longer than a year; short-lived tokens are the point, e.g. \"1h\"")]
    TooLong(String),
}

impl Ttl {
    /// The default lifetime, one hour.
    pub const DEFAULT: Ttl = Ttl(3600);

    /// A lifetime of `seconds`, checked.
    pub fn from_seconds(seconds: u64) -> Result<Self, TtlError> {
        match seconds {
            0 => Err(TtlError::Zero),
            s if s > MAX_SECONDS => Err(TtlError::TooLong(s.to_string())),
            s => Ok(Self(s)),
        }
    }

    /// Parses `"90s"`, `"15m"`, `"1h"`, `"1d"` or `"3600"`.
    ///
    /// ```
    /// use git_credential_codestorage::ttl::Ttl;
    ///
    /// assert_eq!(Ttl::parse("15m").unwrap().seconds(), 900);
    /// assert!(Ttl::parse("0").is_err());
    /// assert!(Ttl::parse("2y").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, TtlError> {
        let trimmed = text.trim();
        let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => trimmed.split_at(at),
            None => (trimmed, ""),
        };
        let multiplier = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(TtlError::Syntax(text.to_owned())),
        };
        if digits.is_empty() {
            return Err(TtlError::Syntax(text.to_owned()));
        }
        let seconds = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(|| TtlError::TooLong(text.to_owned()))?;
        match Self::from_seconds(seconds) {
            Err(TtlError::TooLong(_)) => Err(TtlError::TooLong(text.to_owned())),
            other => other,
        }
    }

    /// The lifetime in seconds.
    pub fn seconds(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::Seconds(n) if n < 0 => Err(TtlError::Syntax(n.to_string())),
            Raw::Seconds(n) => Ttl::from_seconds(n as u64),
            Raw::Text(text) => Ttl::parse(&text),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(Ttl::parse("90s").unwrap().seconds(), 90);
        assert_eq!(Ttl::parse("15m").unwrap().seconds(), 900);
        assert_eq!(Ttl::parse("1h").unwrap().seconds(), 3600);
        assert_eq!(Ttl::parse("1d").unwrap().seconds(), 86_400);
        assert_eq!(Ttl::parse("3600").unwrap().seconds(), 3600);
        assert_eq!(Ttl::parse("365d").unwrap().seconds(), MAX_SECONDS);
    }

    #[test]
    fn refuses_zero_too_long_and_nonsense() {
        assert_eq!(Ttl::parse("0"), Err(TtlError::Zero));
        assert_eq!(Ttl::parse("0m"), Err(TtlError::Zero));
        assert!(matches!(Ttl::parse("366d"), Err(TtlError::TooLong(_))));
        assert!(matches!(
            Ttl::parse("99999999999999999999"),
            Err(TtlError::TooLong(_))
        ));
        assert!(matches!(
            Ttl::parse("18446744073709551615d"),
            Err(TtlError::TooLong(_))
        ));
        for bad in ["", "h", "1w", "-5", "1.5h", "1 h", "1hh", "一h"] {
            assert!(matches!(Ttl::parse(bad), Err(TtlError::Syntax(_))), "{bad}");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for (seconds, text) in [(90, "90s"), (900, "15m"), (7200, "2h"), (86_400, "1d")] {
            assert_eq!(Ttl::from_seconds(seconds).unwrap().to_string(), text);
        }
    }

    #[test]
    fn deserializes_integers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            ttl: Ttl,
        }
        let t: T = toml::from_str("ttl = 300").unwrap();
        assert_eq!(t.ttl.seconds(), 300);
        let t: T = toml::from_str("ttl = \"5m\"").unwrap();
        assert_eq!(t.ttl.seconds(), 300);
        assert!(toml::from_str::<T>("ttl = 0").is_err());
        assert!(toml::from_str::<T>("ttl = -1").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_text_never_panics_and_stays_in_range(text in ".{0,30}") {
            if let Ok(ttl) = Ttl::parse(&text) {
                proptest::prop_assert!((1..=MAX_SECONDS).contains(&ttl.seconds()));
            }
        }

        #[test]
        fn displayed_ttls_parse_back(seconds in 1..=MAX_SECONDS) {
            let ttl = Ttl::from_seconds(seconds).unwrap();
            proptest::prop_assert_eq!(Ttl::parse(&ttl.to_string()).unwrap(), ttl);
        }
    }
}
