//! What came of a POST and what to write on the webhook because of it.

use std::fmt;
use std::time::Duration;

use crate::lane::SLOW_AFTER;
use crate::{Timestamp, Webhook};

/// Response bodies are read at most this far, then dropped.
pub const RESPONSE_BODY_CAP: usize = 1024;

/// Why a POST failed, in the short form recorded as `last_failure_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    Timeout(Duration),
    Status(u16),
    ConnectionRefused,
    BlockedAddress,
    Dns,
    Tls,
    Connection,
    /// The stored secret cannot be sent as a header value.
    UnsendableSecret,
    /// The stored signing secret is not `whsec_` and base64.
    BadSigningSecret,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Timeout(d) if d.subsec_millis() == 0 => {
                write!(f, "timeout after {}s", d.as_secs())
            }
            FailureReason::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            FailureReason::Status(code) if (300..400).contains(code) => {
                write!(f, "HTTP {code} (redirects are not followed)")
            }
            FailureReason::Status(code) => write!(f, "HTTP {code}"),
            FailureReason::ConnectionRefused => f.write_str("connection refused"),
            FailureReason::BlockedAddress => f.write_str("blocked address"),
            FailureReason::Dns => f.write_str("DNS lookup failed"),
            FailureReason::Tls => f.write_str("TLS error"),
            FailureReason::Connection => f.write_str("connection failed"),
            FailureReason::UnsendableSecret => {
                f.write_str("the secret cannot be sent as a header value")
            }
            FailureReason::BadSigningSecret => f.write_str("the signing secret cannot sign"),
        }
    }
}

/// What came of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { status: u16 },
    Failed { reason: FailureReason },
}

impl Outcome {
    /// Any 2xx is success; everything else, redirects included, is a failure.
    pub fn from_status(status: u16) -> Self {
        if (200..300).contains(&status) {
            Outcome::Delivered { status }
        } else {
            Outcome::Failed {
                reason: FailureReason::Status(status),
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status }
            | Outcome::Failed {
                reason: FailureReason::Status(status),
            } => Some(*status),
            Outcome::Failed { .. } => None,
        }
    }
}

/// What to write on the webhook after a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A success on a healthy webhook writes nothing.
    Nothing,
    /// A success after failures, or a quick one after slow ones, clears the
    /// failure state; `slow` keeps the webhook marked slow (the success
    /// itself took [`SLOW_AFTER`] or more), otherwise the mark goes too.
    Recovered { slow: bool },
    /// A success that took [`SLOW_AFTER`] or more, on a webhook not marked
    /// slow yet: marks it, so its next deliveries take the slow lane.
    Slow { at: Timestamp },
    /// A failure; `due_now` asks the sweeper to disable the webhook at its
    /// next run instead of after the window.
    Failure {
        at: Timestamp,
        reason: String,
        due_now: bool,
        /// Failures this record stands for: 1 from one POST, more once
        /// [`coalesce`] merged a run of them.
        count: u32,
    },
    /// The endpoint answered 410 Gone and the operator chose to disable at
    /// once: the webhook is disabled now and its owner mailed by the next
    /// sweep, as for an auto-disable.
    Gone { at: Timestamp },
}

/// The `disabled_reason` of a webhook disabled by a 410 answer.
pub const GONE_REASON: &str = "endpoint answered 410 Gone";

/// What the operator chose to do about some failures, beyond recording them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureRules {
    /// `DisableOnTimeout`: a timeout makes the webhook due for disabling at
    /// the next sweep (the literal reading of "does not respond within 15
    /// seconds").
    pub disable_on_timeout: bool,
    /// `DisableOnGone`: a 410 Gone disables the webhook at once.
    pub disable_on_gone: bool,
}

/// How long a POST took, and whether its webhook counted as slow when it
/// answered: marked slow as stored, or marked while this POST waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub latency: Duration,
    pub was_slow: bool,
}

impl Pace {
    /// Whether this POST took long enough to make its webhook slow.
    pub fn is_slow(self) -> bool {
        self.latency >= SLOW_AFTER
    }
}

/// What to record for `outcome`, which took `pace`, under `rules`. Writes
/// only when the webhook's state changes: a quick success on a healthy
/// webhook writes nothing.
pub fn decide(
    webhook: &Webhook,
    outcome: &Outcome,
    pace: Pace,
    now: Timestamp,
    rules: FailureRules,
) -> Record {
    let slow = pace.is_slow();
    match outcome {
        Outcome::Delivered { .. } if webhook.failing_since.is_some() => Record::Recovered { slow },
        Outcome::Delivered { .. } if slow && !pace.was_slow => Record::Slow { at: now },
        Outcome::Delivered { .. } if !slow && pace.was_slow => Record::Recovered { slow: false },
        Outcome::Delivered { .. } => Record::Nothing,
        Outcome::Failed {
            reason: FailureReason::Status(410),
        } if rules.disable_on_gone => Record::Gone { at: now },
        Outcome::Failed { reason } => Record::Failure {
            at: now,
            reason: reason.to_string(),
            due_now: rules.disable_on_timeout && matches!(reason, FailureReason::Timeout(_)),
            count: 1,
        },
    }
}

/// The writes a batch makes on one webhook, from its records in the order
/// their POSTs ended: a run of failures becomes one write (the last
/// failure's time and reason, their count, due if any was), so a webhook
/// failing hundreds of times a second is written once per batch; nothing is
/// dropped, and every other record keeps its place, so the stored state is
/// the one the records written one by one would leave.
pub fn coalesce(records: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for record in records {
        match (out.last_mut(), record) {
            (_, Record::Nothing) => {}
            (
                Some(Record::Failure {
                    at,
                    reason,
                    due_now,
                    count,
                }),
                Record::Failure {
                    at: next_at,
                    reason: next_reason,
                    due_now: next_due,
                    count: next_count,
                },
            ) => {
                *at = (*at).max(next_at);
                *reason = next_reason;
                *due_now |= next_due;
                *count = count.saturating_add(next_count);
            }
            (_, record) => out.push(record),
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DEFAULT_DEADLINE;
    use crate::delivery::test_support::webhook;

    #[test]
    fn only_2xx_is_success() {
        for ok in [200, 201, 204, 299] {
            assert_eq!(Outcome::from_status(ok), Outcome::Delivered { status: ok });
        }
        for bad in [100, 199, 301, 302, 304, 400, 404, 500, 503] {
            assert!(
                matches!(Outcome::from_status(bad), Outcome::Failed { .. }),
                "{bad}"
            );
            assert_eq!(Outcome::from_status(bad).status(), Some(bad));
        }
    }

    #[test]
    fn failure_reasons_are_short() {
        assert_eq!(
            FailureReason::Timeout(Duration::from_secs(15)).to_string(),
            "timeout after 15s"
        );
        assert_eq!(
            FailureReason::Timeout(Duration::from_millis(1500)).to_string(),
            "timeout after 1500ms"
        );
        assert_eq!(FailureReason::Status(503).to_string(), "HTTP 503");
        assert_eq!(
            FailureReason::Status(302).to_string(),
            "HTTP 302 (redirects are not followed)"
        );
        assert_eq!(
            FailureReason::ConnectionRefused.to_string(),
            "connection refused"
        );
        assert_eq!(FailureReason::BlockedAddress.to_string(), "blocked address");
    }

    #[test]
    fn decide_writes_only_when_state_changes() {
        let now = Timestamp::now();
        let mut hook = webhook();
        let ok = Outcome::Delivered { status: 200 };
        let failed = Outcome::Failed {
            reason: FailureReason::Status(500),
        };
        let timeouts = FailureRules {
            disable_on_timeout: true,
            ..FailureRules::default()
        };
        assert_eq!(
            decide(&hook, &ok, quick(), now, FailureRules::default()),
            Record::Nothing
        );
        assert_eq!(
            decide(&hook, &failed, quick(), now, timeouts),
            Record::Failure {
                at: now,
                reason: "HTTP 500".into(),
                due_now: false,
                count: 1
            }
        );
        hook.failing_since = Some(now);
        assert_eq!(
            decide(&hook, &ok, quick(), now, FailureRules::default()),
            Record::Recovered { slow: false }
        );
    }

    #[test]
    fn a_run_of_failures_is_one_write_and_every_other_record_keeps_its_place() {
        let t = |s: u32| Timestamp::parse(&format!("2026-12-01T10:00:{s:02}Z")).unwrap();
        let failure = |s, reason: &str, due_now| Record::Failure {
            at: t(s),
            reason: reason.into(),
            due_now,
            count: 1,
        };
        assert_eq!(coalesce([]), vec![]);
        assert_eq!(coalesce([Record::Nothing, Record::Nothing]), vec![]);
        assert_eq!(
            coalesce([
                failure(1, "HTTP 503", false),
                Record::Nothing,
                failure(3, "timeout after 15s", true),
                failure(2, "HTTP 500", false),
            ]),
            vec![Record::Failure {
                at: t(3),
                reason: "HTTP 500".into(),
                due_now: true,
                count: 3
            }],
            "the latest time, the last reason, due if any was, every failure counted"
        );
        let recovered = Record::Recovered { slow: false };
        assert_eq!(
            coalesce([
                failure(1, "HTTP 503", false),
                recovered.clone(),
                failure(3, "HTTP 502", false),
                failure(4, "HTTP 503", false),
                Record::Gone { at: t(5) },
                failure(6, "HTTP 503", false),
            ]),
            vec![
                failure(1, "HTTP 503", false),
                recovered,
                Record::Failure {
                    at: t(4),
                    reason: "HTTP 503".into(),
                    due_now: false,
                    count: 2
                },
                Record::Gone { at: t(5) },
                failure(6, "HTTP 503", false),
            ]
        );
        assert_eq!(
            coalesce([
                Record::Failure {
                    at: t(1),
                    reason: "a".into(),
                    due_now: false,
                    count: u32::MAX
                },
                failure(2, "b", false)
            ]),
            vec![Record::Failure {
                at: t(2),
                reason: "b".into(),
                due_now: false,
                count: u32::MAX
            }]
        );
    }

    fn quick() -> Pace {
        Pace {
            latency: Duration::from_millis(100),
            was_slow: false,
        }
    }

    #[test]
    fn a_slow_success_marks_the_webhook_slow_once_and_a_quick_one_clears_it() {
        let now = Timestamp::now();
        let mut hook = webhook();
        let ok = Outcome::Delivered { status: 200 };
        let rules = FailureRules::default();
        let pace = |millis, was_slow| Pace {
            latency: Duration::from_millis(millis),
            was_slow,
        };
        assert_eq!(
            decide(&hook, &ok, pace(2000, false), now, rules),
            Record::Slow { at: now }
        );
        assert_eq!(
            decide(&hook, &ok, pace(1999, false), now, rules),
            Record::Nothing
        );
        // Marked already (stored, or while the POST waited): nothing more.
        assert_eq!(
            decide(&hook, &ok, pace(5000, true), now, rules),
            Record::Nothing
        );
        assert_eq!(
            decide(&hook, &ok, pace(1999, true), now, rules),
            Record::Recovered { slow: false }
        );
        // A failing webhook recovers; a slow success keeps it slow.
        hook.failing_since = Some(now);
        assert_eq!(
            decide(&hook, &ok, pace(2000, false), now, rules),
            Record::Recovered { slow: true }
        );
        assert_eq!(
            decide(&hook, &ok, pace(10, true), now, rules),
            Record::Recovered { slow: false }
        );
        // A slow failure is a failure.
        let failed = Outcome::Failed {
            reason: FailureReason::Status(503),
        };
        assert!(matches!(
            decide(&hook, &failed, pace(3000, false), now, rules),
            Record::Failure { .. }
        ));
    }

    #[test]
    fn a_410_disables_at_once_only_when_the_option_is_on() {
        let now = Timestamp::now();
        let hook = webhook();
        let gone = Outcome::Failed {
            reason: FailureReason::Status(410),
        };
        let on = FailureRules {
            disable_on_gone: true,
            ..FailureRules::default()
        };
        assert_eq!(
            decide(&hook, &gone, quick(), now, on),
            Record::Gone { at: now }
        );
        assert_eq!(
            decide(&hook, &gone, quick(), now, FailureRules::default()),
            Record::Failure {
                at: now,
                reason: "HTTP 410".into(),
                due_now: false,
                count: 1
            }
        );
        let other = Outcome::Failed {
            reason: FailureReason::Status(404),
        };
        assert!(matches!(
            decide(&hook, &other, quick(), now, on),
            Record::Failure { .. }
        ));
        assert_eq!(
            decide(&hook, &Outcome::Delivered { status: 200 }, quick(), now, on),
            Record::Nothing
        );
    }

    #[test]
    fn a_timeout_is_due_at_once_only_when_the_option_is_on() {
        let hook = webhook();
        let timeout = Outcome::Failed {
            reason: FailureReason::Timeout(DEFAULT_DEADLINE),
        };
        let due = |on| {
            let rules = FailureRules {
                disable_on_timeout: on,
                disable_on_gone: true,
            };
            matches!(
                decide(&hook, &timeout, quick(), Timestamp::now(), rules),
                Record::Failure { due_now: true, .. }
            )
        };
        assert!(due(true));
        assert!(!due(false));
    }
}
