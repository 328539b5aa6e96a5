//! Delivery lanes (`docs/ARCHITECTURE.md`, "Lanes"): where a queued delivery
//! goes so that an endpoint that is failing or slow never holds up anyone
//! else's. Pure: `now` is a parameter.
//!
//! - **fast**: webhooks that are healthy (their last delivery succeeded, in
//!   less than [`SLOW_AFTER`]);
//! - **slow**: webhooks that are failing (`failing_since` is set) or slow
//!   (`slow_since` is set), with its own concurrency;
//! - **waiting**: retries that are not due yet. A message there is received
//!   about once per 12 hours at most ([`MAX_POSTPONE`]) until it is due, then
//!   joins its webhook's lane.

use std::time::Duration;

use super::retry::{MAX_QUEUE_DELAY, wait_until};
use super::{Timestamp, Webhook};

/// A delivery that took at least this long (or is still waiting for its
/// answer after it) makes its webhook slow: its next deliveries go to the
/// slow lane. Twenty times a typical endpoint's answer, and the healthy
/// lane's latency target.
pub const SLOW_AFTER: Duration = Duration::from_secs(2);

/// The longest a waiting retry is kept invisible at a time: SQS refuses
/// to keep a message invisible beyond 12 hours from the time it was
/// received, and some of that has passed (the batching window and the
/// invocation, 5 minutes at most here). A waiting retry is looked at again
/// after at most this long.
pub const MAX_POSTPONE: Duration = Duration::from_secs(12 * 3600 - 5 * 60);

/// A queue of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Fast,
    Slow,
    Waiting,
}

impl Lane {
    /// The lane a webhook's deliveries belong in: slow while it is failing
    /// or slow, fast otherwise.
    pub fn of(webhook: &Webhook) -> Lane {
        if webhook.failing_since.is_some() || webhook.slow_since.is_some() {
            Lane::Slow
        } else {
            Lane::Fast
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Slow => "slow",
            Lane::Waiting => "waiting",
        }
    }
}

/// The queue names of the three lanes, to tell which lane an SQS record
/// came from (its event source ARN ends with the queue's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneNames {
    pub fast: String,
    pub slow: String,
    pub waiting: String,
}

impl LaneNames {
    /// The names at the end of the three queue URLs (or ARNs).
    pub fn from_urls(fast: &str, slow: &str, waiting: &str) -> Self {
        Self {
            fast: queue_name(fast).to_owned(),
            slow: queue_name(slow).to_owned(),
            waiting: queue_name(waiting).to_owned(),
        }
    }

    /// The lane of a record from `source` (an SQS queue ARN); a record of
    /// an unknown source counts as fast, which moves nothing by itself.
    pub fn lane_of_source(&self, source: &str) -> Lane {
        let name = queue_name(source);
        if name == self.slow {
            Lane::Slow
        } else if name == self.waiting {
            Lane::Waiting
        } else {
            Lane::Fast
        }
    }
}

/// The last segment of a queue URL (`.../123456789012/name`) or ARN
/// (`arn:aws:sqs:region:account:name`).
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

/// What to do with a record that is to be delivered, before any POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// POST it here.
    Post,
    /// Send it to another lane, visible after `delay`; acknowledged only
    /// once that lane took it.
    Move { to: Lane, delay: Duration },
    /// Leave it in the waiting lane, invisible for this long.
    Postpone(Duration),
}

/// Where a record from `source` goes: a retry not due yet waits (in the
/// waiting lane, looked at once per 12 hours at most); a due retry leaves
/// the waiting lane for its webhook's lane; a delivery in the fast lane
/// whose webhook has become unhealthy moves to the slow lane. A delivery in
/// the slow lane is POSTed there even if its webhook recovered meanwhile:
/// moving it back would cost a queue call and gain nothing.
pub fn route(source: Lane, webhook: Lane, not_before: Option<Timestamp>, now: Timestamp) -> Route {
    let wait = not_before.and_then(|at| wait_until(now, at));
    match (source, wait) {
        (Lane::Waiting, Some(wait)) => Route::Postpone(wait.min(MAX_POSTPONE)),
        (Lane::Waiting, None) => Route::Move {
            to: webhook,
            delay: Duration::ZERO,
        },
        (_, Some(wait)) => Route::Move {
            to: Lane::Waiting,
            delay: wait.min(MAX_QUEUE_DELAY),
        },
        (Lane::Fast, None) if webhook == Lane::Slow => Route::Move {
            to: Lane::Slow,
            delay: Duration::ZERO,
        },
        (_, None) => Route::Post,
    }
}

/// Where the next attempt of a failed delivery goes, and its delay: a
/// wait the queue can hold (15 minutes) goes to the slow lane delayed (its
/// webhook has just failed); a longer one waits in the waiting lane.
pub fn retry_route(wait: Duration) -> (Lane, Duration) {
    if wait <= MAX_QUEUE_DELAY {
        (Lane::Slow, wait)
    } else {
        (Lane::Waiting, MAX_QUEUE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    fn webhook() -> Webhook {
        crate::testing::webhook("P")
    }

    #[test]
    fn a_webhook_is_in_the_slow_lane_while_failing_or_slow() {
        let now = at("2026-12-01T10:00:00Z");
        let mut hook = webhook();
        assert_eq!(Lane::of(&hook), Lane::Fast);
        hook.failing_since = Some(now);
        assert_eq!(Lane::of(&hook), Lane::Slow);
        hook.slow_since = Some(now);
        assert_eq!(Lane::of(&hook), Lane::Slow);
        hook.failing_since = None;
        assert_eq!(Lane::of(&hook), Lane::Slow);
        hook.slow_since = None;
        assert_eq!(Lane::of(&hook), Lane::Fast);
    }

    #[test]
    fn the_lane_of_a_record_is_read_from_its_queue_name() {
        let names = LaneNames::from_urls(
            "http://127.0.0.1:4566/123456789012/deliveries",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/deliveries-slow",
            "deliveries-waiting",
        );
        assert_eq!(names.slow, "deliveries-slow");
        assert_eq!(names.waiting, "deliveries-waiting");
        let arn = |name: &str| format!("arn:aws:sqs:eu-west-1:123456789012:{name}");
        assert_eq!(names.lane_of_source(&arn("deliveries")), Lane::Fast);
        assert_eq!(names.lane_of_source(&arn("deliveries-slow")), Lane::Slow);
        assert_eq!(
            names.lane_of_source(&arn("deliveries-waiting")),
            Lane::Waiting
        );
        assert_eq!(names.lane_of_source(&arn("other")), Lane::Fast);
        assert_eq!(names.lane_of_source(""), Lane::Fast);
        assert_eq!(queue_name("plain"), "plain");
    }

    #[test]
    fn routes_of_due_deliveries() {
        let now = at("2026-12-01T10:00:00Z");
        let zero = Duration::ZERO;
        assert_eq!(route(Lane::Fast, Lane::Fast, None, now), Route::Post);
        assert_eq!(
            route(Lane::Fast, Lane::Slow, None, now),
            Route::Move {
                to: Lane::Slow,
                delay: zero
            }
        );
        assert_eq!(route(Lane::Slow, Lane::Slow, None, now), Route::Post);
        assert_eq!(route(Lane::Slow, Lane::Fast, None, now), Route::Post);
        // Due exactly now, or overdue: not waiting any more.
        assert_eq!(route(Lane::Fast, Lane::Fast, Some(now), now), Route::Post);
        assert_eq!(
            route(Lane::Waiting, Lane::Fast, Some(now), now),
            Route::Move {
                to: Lane::Fast,
                delay: zero
            }
        );
        assert_eq!(
            route(
                Lane::Waiting,
                Lane::Slow,
                Some(at("2026-12-01T09:00:00Z")),
                now
            ),
            Route::Move {
                to: Lane::Slow,
                delay: zero
            }
        );
    }

    #[test]
    fn a_retry_not_due_waits_at_most_twelve_hours_at_a_time() {
        let now = at("2026-12-01T10:00:00Z");
        let due = |raw| Some(at(raw));
        assert_eq!(
            route(Lane::Waiting, Lane::Slow, due("2026-12-02T10:00:00Z"), now),
            Route::Postpone(MAX_POSTPONE)
        );
        assert_eq!(
            route(Lane::Waiting, Lane::Slow, due("2026-12-01T21:55:00Z"), now),
            Route::Postpone(MAX_POSTPONE)
        );
        assert_eq!(
            route(Lane::Waiting, Lane::Slow, due("2026-12-01T21:54:59Z"), now),
            Route::Postpone(MAX_POSTPONE - Duration::from_secs(1))
        );
        assert_eq!(MAX_POSTPONE, Duration::from_secs(42_900));
        // In a delivery lane, a retry not yet due goes to wait.
        assert_eq!(
            route(Lane::Slow, Lane::Slow, due("2026-12-01T10:00:05Z"), now),
            Route::Move {
                to: Lane::Waiting,
                delay: Duration::from_secs(5)
            }
        );
        assert_eq!(
            route(Lane::Fast, Lane::Fast, due("2026-12-02T10:00:00Z"), now),
            Route::Move {
                to: Lane::Waiting,
                delay: MAX_QUEUE_DELAY
            }
        );
    }

    #[test]
    fn a_retry_the_queue_can_hold_goes_to_the_slow_lane_a_longer_one_waits() {
        assert_eq!(
            retry_route(Duration::from_secs(5)),
            (Lane::Slow, Duration::from_secs(5))
        );
        assert_eq!(retry_route(MAX_QUEUE_DELAY), (Lane::Slow, MAX_QUEUE_DELAY));
        assert_eq!(
            retry_route(MAX_QUEUE_DELAY + Duration::from_secs(1)),
            (Lane::Waiting, MAX_QUEUE_DELAY)
        );
        assert_eq!(
            retry_route(Duration::from_secs(86_400)),
            (Lane::Waiting, MAX_QUEUE_DELAY)
        );
    }

    #[test]
    fn lane_names_are_stable() {
        assert_eq!(Lane::Fast.as_str(), "fast");
        assert_eq!(Lane::Slow.as_str(), "slow");
        assert_eq!(Lane::Waiting.as_str(), "waiting");
    }
}
