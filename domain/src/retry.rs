//! The opt-in retry schedule (`retry_policy: "standard"`): when a failed
//! delivery is attempted again, honouring `Retry-After`. Pure: `now` and the
//! jitter are parameters.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryPolicy {
    /// One attempt, as Qase does.
    #[default]
    None,
    /// Attempts again on [`STANDARD_SCHEDULE`] until one is delivered.
    Standard,
}

impl RetryPolicy {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(Self::None),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The waits after the 1st, 2nd, ... failed attempt: 9 retries over about
/// 3.5 days, as Standard Webhooks and Svix space them.
pub const STANDARD_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(24 * HOUR),
];

/// Each wait varies by up to this share, so retries of many deliveries
/// that failed together do not arrive together.
pub const JITTER: f64 = 0.1;

/// A jitter for [`retry_delay`], uniform in `-1..=1`; `0` if the randomness
/// source fails (the wait is then exactly as scheduled).
pub fn random_jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0,
        Err(_) => 0.0,
    }
}

/// A `Retry-After` longer than this is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// The longest an SQS message can be delayed; a longer wait hops through
/// the queue in steps of at most this, without POSTing.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * MINUTE);

/// The wait before the next attempt, after attempt `attempt` (1 for the
/// first) failed; `None` when the schedule has ended. `jitter` in `-1..=1`
/// moves the wait by up to ±10 %; a `Retry-After` later than that wins,
/// capped at 24 hours.
pub fn retry_delay(
    schedule: &[Duration],
    attempt: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let planned = *schedule.get(index)?;
    let jitter = if jitter.is_finite() {
        jitter.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let planned = planned.mul_f64(1.0 + JITTER * jitter);
    Some(match retry_after {
        Some(asked) => planned.max(asked.min(MAX_RETRY_AFTER)),
        None => planned,
    })
}

/// A `Retry-After` header: delay-seconds, or an HTTP date (taken relative to
/// `now`; a date in the past asks for no wait). `None` when unreadable.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(now.as_datetime());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// How long from `now` until `at`; `None` once it is due.
pub fn wait_until(now: Timestamp, at: Timestamp) -> Option<Duration> {
    at.as_datetime()
        .signed_duration_since(now.as_datetime())
        .to_std()
        .ok()
        .filter(|wait| !wait.is_zero())
}

/// The single-lane design's hop, before the waiting lane: a retry not due
/// yet went back to the delivery queue delayed by this (at most
/// [`MAX_QUEUE_DELAY`]); `None` once it is due. The sender no longer hops
/// (`lane::route` sends such a retry to the waiting lane); the fleet model
/// in `make bench` uses this to model the design it replaced.
pub fn hop_delay(now: Timestamp, not_before: Timestamp) -> Option<Duration> {
    wait_until(now, not_before).map(|wait| wait.min(MAX_QUEUE_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    #[test]
    fn the_standard_schedule_spans_three_and_a_half_days_in_nine_retries() {
        let s = &STANDARD_SCHEDULE;
        assert_eq!(retry_delay(s, 1, 0.0, None), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(s, 2, 0.0, None), Some(Duration::from_secs(300)));
        assert_eq!(
            retry_delay(s, 9, 0.0, None),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            retry_delay(s, 10, 0.0, None),
            None,
            "the schedule has ended"
        );
        assert_eq!(retry_delay(s, 0, 0.0, None), None, "attempts count from 1");
        let total: Duration = s.iter().sum();
        assert_eq!(
            total,
            Duration::from_secs(5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 50_400 + 72_000 + 86_400)
        );
    }

    #[test]
    fn jitter_moves_a_wait_by_at_most_ten_percent() {
        let s = &STANDARD_SCHEDULE;
        assert_eq!(retry_delay(s, 2, 1.0, None), Some(Duration::from_secs(330)));
        assert_eq!(
            retry_delay(s, 2, -1.0, None),
            Some(Duration::from_secs(270))
        );
        assert_eq!(retry_delay(s, 2, 0.5, None), Some(Duration::from_secs(315)));
        assert_eq!(
            retry_delay(s, 2, 7.0, None),
            Some(Duration::from_secs(330)),
            "clamped"
        );
        assert_eq!(
            retry_delay(s, 2, -7.0, None),
            Some(Duration::from_secs(270)),
            "clamped"
        );
        assert_eq!(
            retry_delay(s, 2, f64::NAN, None),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn a_later_retry_after_wins_up_to_a_day() {
        let s = &STANDARD_SCHEDULE;
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(s, 1, 0.0, Some(hour)), Some(hour));
        assert_eq!(
            retry_delay(s, 2, 0.0, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(300)),
            "earlier: the schedule"
        );
        assert_eq!(
            retry_delay(s, 1, 0.0, Some(hour * 100)),
            Some(Duration::from_secs(86_400)),
            "at most a day"
        );
        assert_eq!(
            retry_delay(s, 10, 0.0, Some(hour)),
            None,
            "never beyond the schedule"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = at("2026-11-29T12:00:00Z");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 12:10:00 GMT", now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "soon", "-5", "1.5", "12 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn a_long_wait_hops_through_the_queue_fifteen_minutes_at_a_time() {
        let now = at("2026-11-29T12:00:00Z");
        // SQS delays a message at most 900 seconds.
        let most = Some(Duration::from_secs(900));
        assert_eq!(hop_delay(now, at("2026-11-29T14:00:00Z")), most);
        assert_eq!(hop_delay(now, at("2026-11-29T12:15:00Z")), most);
        assert_eq!(
            hop_delay(now, at("2026-11-29T12:14:59Z")),
            Some(Duration::from_secs(899))
        );
        assert_eq!(
            hop_delay(now, at("2026-11-29T12:00:05Z")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(hop_delay(now, now), None, "due");
        assert_eq!(hop_delay(now, at("2026-11-29T11:00:00Z")), None, "overdue");
    }

    #[test]
    fn random_jitter_stays_within_plus_or_minus_one() {
        let draws: Vec<f64> = (0..200).map(|_| random_jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        assert!(draws.iter().any(|j| *j < -0.5) && draws.iter().any(|j| *j > 0.5));
    }

    #[test]
    fn policies_read_by_name() {
        assert_eq!(RetryPolicy::parse("none"), Some(RetryPolicy::None));
        assert_eq!(RetryPolicy::parse("standard"), Some(RetryPolicy::Standard));
        assert_eq!(RetryPolicy::parse("Standard"), None);
        assert_eq!(RetryPolicy::default(), RetryPolicy::None);
        assert_eq!(
            serde_json::to_string(&RetryPolicy::Standard).unwrap(),
            "\"standard\""
        );
    }
}
