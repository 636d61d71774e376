//! Wall-clock time in unix seconds, and how times are written for people.

/// The current wall-clock time in unix seconds (negative before 1970).
pub fn now() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    }
}

/// A unix time as an RFC 3339 UTC date, e.g. `2026-05-01T12:00:00Z`.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (out of range)"))
}

/// "expires in 42m" or "expired 3m ago".
pub fn describe_expiry(exp: i64, now: i64) -> String {
    let delta = exp - now;
    if delta >= 0 {
        format!("expires in {}", span(delta))
    } else {
        format!("expired {} ago", span(-delta))
    }
}

/// A duration in seconds as `3d`, `1h30m`, `42m` or `5s`.
pub fn span(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert!(format_time(i64::MAX).contains("out of range"));
    }

    #[test]
    fn describe_expiry_reads_naturally() {
        assert_eq!(describe_expiry(NOW + 42 * 60, NOW), "expires in 42m");
        assert_eq!(describe_expiry(NOW - 180, NOW), "expired 3m ago");
        assert_eq!(describe_expiry(NOW + 5400, NOW), "expires in 1h30m");
        assert_eq!(describe_expiry(NOW + 5, NOW), "expires in 5s");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now() > 1_577_836_800);
    }
}
