//! Timestamps as stored and shown: RFC 3339, UTC, millisecond precision.
//!
//! The textual form has a fixed width, so string order is time order; the
//! failing-webhooks index sorts on it.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// `d` later; the latest representable instant if that is beyond it.
    pub fn after(&self, d: std::time::Duration) -> Self {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| self.0.checked_add_signed(d))
            .map_or(Self(DateTime::<Utc>::MAX_UTC), Self)
    }

    /// `d` earlier; the earliest representable instant if that is before it.
    pub fn before(&self, d: std::time::Duration) -> Self {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| self.0.checked_sub_signed(d))
            .map_or(Self(DateTime::<Utc>::MIN_UTC), Self)
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    pub fn parse(raw: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| Self::from(t.with_timezone(&Utc)))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    /// Truncates to whole milliseconds, the precision that is stored.
    fn from(value: DateTime<Utc>) -> Self {
        let millis = value.timestamp_millis();
        Self(DateTime::from_timestamp_millis(millis).unwrap_or(value))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_adds_and_saturates_instead_of_overflowing() {
        let t = Timestamp::parse("2026-11-29T12:00:00Z").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(t.after(day).to_string(), "2026-11-30T12:00:00.000Z");
        assert_eq!(t.after(std::time::Duration::ZERO), t);
        let far = t.after(std::time::Duration::from_secs(u64::MAX));
        assert_eq!(far, Timestamp(DateTime::<Utc>::MAX_UTC));
        assert!(far > t.after(day));
        assert_eq!(t.before(day).to_string(), "2026-11-28T12:00:00.000Z");
        assert_eq!(t.before(std::time::Duration::ZERO), t);
        let early = t.before(std::time::Duration::from_secs(u64::MAX));
        assert_eq!(early, Timestamp(DateTime::<Utc>::MIN_UTC));
    }

    #[test]
    fn unix_seconds_count_from_1970() {
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:00Z")
                .unwrap()
                .unix_seconds(),
            0
        );
        assert_eq!(
            Timestamp::parse("2022-04-21T11:23:14Z")
                .unwrap()
                .unix_seconds(),
            1_650_540_194
        );
        assert_eq!(
            Timestamp::parse("1969-12-31T23:59:59Z")
                .unwrap()
                .unix_seconds(),
            -1
        );
    }

    #[test]
    fn fixed_width_text_sorts_like_time() {
        let a = Timestamp::parse("2026-01-02T03:04:05Z").unwrap();
        let b = Timestamp::parse("2026-01-02T03:04:05.1Z").unwrap();
        let c = Timestamp::parse("2026-01-02T03:04:06+00:00").unwrap();
        assert_eq!(a.to_string(), "2026-01-02T03:04:05.000Z");
        assert_eq!(b.to_string(), "2026-01-02T03:04:05.100Z");
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
    }

    #[test]
    fn round_trips_through_serde() {
        let t = Timestamp::parse("2026-11-28T10:00:00.123+02:00").unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-28T08:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
