//! Bulk recovery (`docs/ARCHITECTURE.md`, "Bulk recovery"): after an
//! outage, send a webhook once more every delivery of a window that did not
//! reach it, and with `include_missed` the events it missed while it was
//! disabled, at a pace the endpoint can take. Pure: `now` is a parameter.
//!
//! A recovery is driven in steps, each a message in the waiting lane that
//! the sender handles: *finding* reads the history (newest first) and marks
//! each event to send once, then the missed events by time; *sending*
//! queues what was found, [`send_chunk`] deliveries per step, [`rate`]
//! (Plan::rate) of them visible each second ([`Release`]). At the
//! POST, each delivery also takes a slot of its recovery's second, so the
//! endpoint never gets more than the rate in any second, whatever the
//! queue's timing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::delivery::{Skip, Trigger};
use crate::history::AttemptOutcome;
use crate::validation::{integer, not_null};
use crate::{Attempt, DeliveryLog, EventName, FieldError, ProjectCode, Timestamp, WebhookId};

/// Deliveries a second, when the request does not say.
pub const DEFAULT_RATE: u32 = 10;
/// The highest rate a recovery may ask for.
pub const MAX_RATE: u32 = 100;
/// A sending step queues this many seconds of deliveries at the rate, then
/// the next step follows when they have been released.
pub const SEND_STEP: Duration = Duration::from_secs(10);
/// Attempts a finding step reads per history page.
pub const FIND_PAGE: u32 = 500;
/// A second's slot is used only in its first 800 ms: a POST started then
/// reaches the endpoint within the same second unless the network takes
/// longer than the rest of it, so the endpoint's count per second stays
/// within the rate.
pub const SLOT_USABLE: Duration = Duration::from_millis(800);

/// `POST .../webhooks/{id}/recover`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverInput {
    #[serde(default, deserialize_with = "not_null")]
    pub since: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub until: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub include_missed: Option<bool>,
    #[serde(default, deserialize_with = "integer")]
    pub rate_per_second: Option<i64>,
}

/// A span of time, `from` included, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    /// The part of both, if any.
    pub fn and(self, other: Window) -> Option<Window> {
        let window = Window {
            from: self.from.max(other.from),
            to: self.to.min(other.to),
        };
        (window.from < window.to).then_some(window)
    }
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The deliveries created in this window that did not deliver.
    pub window: Window,
    /// The events published in this window, which the webhook missed while
    /// it was disabled; `None` without `include_missed` or when the window
    /// and the last disabled span do not meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Window>,
    pub rate: u32,
}

fn time(field: &str, raw: Option<&str>) -> Result<Option<Timestamp>, FieldError> {
    raw.map(|raw| {
        Timestamp::parse(raw).ok_or_else(|| {
            FieldError::new(field, "must be an RFC 3339 time, e.g. 2026-11-24T09:00:00Z")
        })
    })
    .transpose()
}

impl RecoverInput {
    /// The plan for a recovery at `now` of a webhook whose last disabled
    /// span is `disabled`, with the history kept as `log` says. `until`
    /// defaults to `now` (and a later one counts as `now`: what is
    /// recovered exists by then); `since` must be within the history's
    /// days, as the deliveries and events before them are gone.
    pub fn validate(
        self,
        disabled: Option<Window>,
        log: DeliveryLog,
        now: Timestamp,
    ) -> Result<Plan, FieldError> {
        let since = time("since", self.since.as_deref())?
            .ok_or_else(|| FieldError::new("since", "is required"))?;
        let until = time("until", self.until.as_deref())?.map_or(now, |until| until.min(now));
        let oldest = now.before(Duration::from_secs(u64::from(log.days_kept()) * 86_400));
        if since < oldest {
            return Err(FieldError::new(
                "since",
                format!(
                    "the delivery history keeps {} days: since must be {} or later",
                    log.days_kept(),
                    oldest
                ),
            ));
        }
        if since >= until {
            return Err(FieldError::new(
                "until",
                "must be later than since (and since earlier than now)",
            ));
        }
        let rate = match self.rate_per_second {
            None => DEFAULT_RATE,
            Some(rate) => u32::try_from(rate)
                .ok()
                .filter(|rate| (1..=MAX_RATE).contains(rate))
                .ok_or_else(|| {
                    FieldError::new(
                        "rate_per_second",
                        format!("must be between 1 and {MAX_RATE}"),
                    )
                })?,
        };
        let window = Window {
            from: since,
            to: until,
        };
        let missed = match self.include_missed {
            Some(true) => disabled.and_then(|disabled| window.and(disabled)),
            _ => None,
        };
        Ok(Plan {
            window,
            missed,
            rate,
        })
    }
}

/// What the latest attempt of a delivery, seen newest first, says about
/// its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// It did not reach the webhook: send the event once more, unless a
    /// newer delivery of it decided first.
    Resend,
    /// A redelivery or recovery delivered it: older deliveries of the event
    /// that failed need nothing.
    Settled,
    /// Nothing to do: a first delivery that arrived (no older delivery of
    /// its event exists), a ping, or a skip because the webhook no longer
    /// subscribes to the event.
    Ignore,
}

/// The rule for one delivery, given its latest attempt.
pub fn judge(latest: &Attempt) -> Sighting {
    match (latest.trigger, latest.outcome) {
        (Trigger::Ping, _) => Sighting::Ignore,
        (Trigger::Event, AttemptOutcome::Delivered) => Sighting::Ignore,
        (_, AttemptOutcome::Delivered) => Sighting::Settled,
        (_, AttemptOutcome::Skipped)
            if latest.skipped_reason.as_deref() == Some(Skip::Unsubscribed.reason()) =>
        {
            Sighting::Ignore
        }
        (_, AttemptOutcome::Failed | AttemptOutcome::Skipped) => Sighting::Resend,
    }
}

/// Deliveries a sending step queues at `rate`: [`SEND_STEP`]'s worth, at
/// most [`MAX_CHUNK`], at least one second's. Fewer delayed messages in the
/// lane at a time keep each receive cheap; the steps this costs are a few
/// calls per chunk.
pub fn send_chunk(rate: u32) -> usize {
    let rate = rate.max(1) as usize;
    (rate * SEND_STEP.as_secs() as usize)
        .min(MAX_CHUNK)
        .max(rate)
}

/// The most deliveries one sending step queues.
pub const MAX_CHUNK: usize = 200;

/// How a sending step releases its chunk: whole seconds from the step on,
/// `rate` deliveries each, beginning `lead` seconds in (where the previous
/// chunk's release ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub lead: u64,
    pub rate: u32,
}

impl Release {
    /// A step at `now` after a chunk whose release ends at `from` (`None`:
    /// the first chunk, at once).
    pub fn at(rate: u32, from: Option<Timestamp>, now: Timestamp) -> Self {
        let lead = from.map_or(0, |from| {
            let millis =
                from.as_datetime().timestamp_millis() - now.as_datetime().timestamp_millis();
            u64::try_from(millis).map_or(0, |millis| millis.div_ceil(1000))
        });
        Self {
            lead,
            rate: rate.max(1),
        }
    }

    /// When the `i`-th delivery becomes visible.
    pub fn delay(&self, i: usize) -> Duration {
        Duration::from_secs(self.lead + (i / self.rate as usize) as u64)
    }

    /// Seconds from the step until `queued` deliveries are all released.
    pub fn ends_after(&self, queued: usize) -> Duration {
        Duration::from_secs(self.lead + queued.div_ceil(self.rate as usize) as u64)
    }

    /// When the next step runs: a second before this chunk's release ends,
    /// so the next chunk is queued in time to follow it without a gap.
    pub fn next_step(&self, queued: usize) -> Duration {
        self.ends_after(queued)
            .saturating_sub(Duration::from_secs(1))
    }
}

/// The second a POST at `now` takes its slot in, if it may still take
/// one: `None` late in a second, when the POST could reach the endpoint in
/// the next one.
pub fn slot_second(now: Timestamp) -> Option<i64> {
    let millis = now.as_datetime().timestamp_millis();
    (millis.rem_euclid(1000) < SLOT_USABLE.as_millis() as i64).then_some(millis.div_euclid(1000))
}

/// How a recovery is getting on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Deliveries found to send (one per event).
    pub found: u64,
    /// Queued so far.
    pub queued: u64,
    /// Found, but their event is no longer kept: not sent.
    pub expired: u64,
    /// POSTed (first attempts).
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Not sent because the webhook was disabled or deleted meanwhile.
    pub skipped: u64,
    /// Every delivery to send is found.
    pub found_all: bool,
    /// Every delivery found is queued (or expired).
    pub queued_all: bool,
}

/// Where a recovery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Finding,
    Sending,
    Finished,
}

impl Progress {
    /// Everything found was queued, and every delivery queued was sent or
    /// skipped.
    pub fn is_finished(&self) -> bool {
        self.found_all && self.queued_all && self.sent + self.skipped >= self.queued
    }

    pub fn state(&self) -> State {
        if !self.found_all {
            State::Finding
        } else if self.is_finished() {
            State::Finished
        } else {
            State::Sending
        }
    }
}

/// The recovery a delivery belongs to, as its queue message carries it:
/// the sender counts its first attempt and keeps its POSTs to the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paced {
    pub id: Uuid,
    pub rate: u32,
}

/// What one sender batch adds to a recovery's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }
}

/// A recovery as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub id: Uuid,
    pub project: ProjectCode,
    pub webhook_id: WebhookId,
    pub plan: Plan,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

/// Where a recovery's next step starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", deny_unknown_fields)]
pub enum Phase {
    /// Reading the history newest first, below `before` (an attempt
    /// cursor; the window's end at first).
    Failed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
    },
    /// Reading the project's events of the missed window by time, after
    /// `after` (the store's position).
    Missed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Queueing what was found, oldest event first, after `after`,
    /// released from `release_from` on (where the previous chunk's ends).
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release_from: Option<Timestamp>,
    },
}

/// One step of a recovery, as queued in the waiting lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub recovery_step: StepOf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepOf {
    pub recovery: Uuid,
    pub project: ProjectCode,
    pub webhook_id: WebhookId,
    pub plan: Plan,
    /// When the recovery was made: the history is read from here down, so
    /// a later success of a failed delivery counts, and the recovery's own
    /// deliveries do not.
    pub created_at: Timestamp,
    pub phase: Phase,
}

impl Step {
    pub fn first(recovery: &Recovery) -> Self {
        Self::at(recovery, Phase::Failed { before: None })
    }

    pub fn at(recovery: &Recovery, phase: Phase) -> Self {
        Self {
            recovery_step: StepOf {
                recovery: recovery.id,
                project: recovery.project.clone(),
                webhook_id: recovery.webhook_id,
                plan: recovery.plan.clone(),
                created_at: recovery.created_at,
                phase,
            },
        }
    }

    pub fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn decode(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// The recovery this step belongs to, as far as a step tells it.
    pub fn recovery(&self) -> Recovery {
        let step = &self.recovery_step;
        Recovery {
            id: step.recovery,
            project: step.project.clone(),
            webhook_id: step.webhook_id,
            plan: step.plan.clone(),
            created_at: step.created_at,
            finished_at: None,
        }
    }
}

impl Recovery {
    /// The queue message that sends `event` once more to the webhook as
    /// part of this recovery: a new delivery of the same bytes.
    pub fn delivery(
        &self,
        event: &crate::StoredEvent,
    ) -> Result<crate::DeliveryMessage, serde_json::Error> {
        let mut message = event.redelivery(self.webhook_id)?;
        message.trigger = Trigger::Recovery;
        message.recovery = Some(Paced {
            id: self.id,
            rate: self.plan.rate,
        });
        Ok(message)
    }
}

/// The events a webhook subscribed to `events` missed: the names it
/// subscribes to now, never the ping.
pub fn misses(subscribed: &std::collections::BTreeSet<EventName>, name: EventName) -> bool {
    name != EventName::Ping && subscribed.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeliveryMessage;

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    fn input(since: &str, until: Option<&str>) -> RecoverInput {
        RecoverInput {
            since: Some(since.into()),
            until: until.map(Into::into),
            ..RecoverInput::default()
        }
    }

    const NOW: &str = "2026-12-01T10:00:00Z";

    #[test]
    fn a_plan_defaults_to_now_and_the_default_rate_and_refuses_what_cannot_be_recovered() {
        let log = DeliveryLog::days(30);
        let plan = input("2026-11-30T00:00:00Z", None)
            .validate(None, log, at(NOW))
            .unwrap();
        assert_eq!(plan.window.to, at(NOW));
        assert_eq!(plan.rate, DEFAULT_RATE);
        assert_eq!(plan.missed, None);
        // A later until counts as now.
        let later = input("2026-11-30T00:00:00Z", Some("2026-12-02T00:00:00Z"))
            .validate(None, log, at(NOW))
            .unwrap();
        assert_eq!(later.window.to, at(NOW));
        for (input, field) in [
            (RecoverInput::default(), "since"),
            (input("yesterday", None), "since"),
            (input("2026-10-01T00:00:00Z", None), "since"),
            (
                input("2026-11-30T00:00:00Z", Some("2026-11-29T00:00:00Z")),
                "until",
            ),
            (
                input("2026-11-30T00:00:00Z", Some("2026-11-30T00:00:00Z")),
                "until",
            ),
            (input("2026-11-30T00:00:00Z", Some("soon")), "until"),
            (
                RecoverInput {
                    rate_per_second: Some(0),
                    ..input("2026-11-30T00:00:00Z", None)
                },
                "rate_per_second",
            ),
            (
                RecoverInput {
                    rate_per_second: Some(i64::from(MAX_RATE) + 1),
                    ..input("2026-11-30T00:00:00Z", None)
                },
                "rate_per_second",
            ),
            (
                RecoverInput {
                    rate_per_second: Some(-1),
                    ..input("2026-11-30T00:00:00Z", None)
                },
                "rate_per_second",
            ),
        ] {
            assert_eq!(input.validate(None, log, at(NOW)).unwrap_err().field, field);
        }
        // The history's first day is still in.
        let first = input("2026-11-01T10:00:00Z", None).validate(None, log, at(NOW));
        assert_eq!(first.unwrap().window.from, at("2026-11-01T10:00:00Z"));
        let max = RecoverInput {
            rate_per_second: Some(i64::from(MAX_RATE)),
            ..input("2026-11-30T00:00:00Z", None)
        };
        assert_eq!(max.validate(None, log, at(NOW)).unwrap().rate, MAX_RATE);
    }

    #[test]
    fn a_request_body_takes_no_null_and_an_integer_rate_written_either_way() {
        let parse = |json: &str| serde_json::from_str::<RecoverInput>(json);
        for json in [
            r#"{"since": null}"#,
            r#"{"since": "2026-11-30T00:00:00Z", "until": null}"#,
            r#"{"since": "2026-11-30T00:00:00Z", "include_missed": null}"#,
            r#"{"since": "2026-11-30T00:00:00Z", "rate_per_second": null}"#,
            r#"{"since": "2026-11-30T00:00:00Z", "rate_per_second": 2.5}"#,
            r#"{"since": "2026-11-30T00:00:00Z", "speed": 1}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
        let input = parse(r#"{"since": "2026-11-30T00:00:00Z", "rate_per_second": 20.0}"#).unwrap();
        assert_eq!(input.rate_per_second, Some(20));
    }

    #[test]
    fn missed_events_come_from_the_narrower_of_the_window_and_the_disabled_span() {
        let log = DeliveryLog::days(30);
        let disabled = Window {
            from: at("2026-11-29T00:00:00Z"),
            to: at("2026-11-30T12:00:00Z"),
        };
        let with = |since: &str, until: Option<&str>| {
            RecoverInput {
                include_missed: Some(true),
                ..input(since, until)
            }
            .validate(Some(disabled), log, at(NOW))
            .unwrap()
            .missed
        };
        assert_eq!(with("2026-11-28T00:00:00Z", None), Some(disabled));
        assert_eq!(
            with("2026-11-30T00:00:00Z", None),
            Some(Window {
                from: at("2026-11-30T00:00:00Z"),
                to: disabled.to
            })
        );
        assert_eq!(
            with("2026-11-28T00:00:00Z", Some("2026-11-29T06:00:00Z")),
            Some(Window {
                from: disabled.from,
                to: at("2026-11-29T06:00:00Z")
            })
        );
        assert_eq!(with("2026-11-30T12:00:00Z", None), None);
        // Never disabled, or not asked for: nothing missed.
        let never = RecoverInput {
            include_missed: Some(true),
            ..input("2026-11-28T00:00:00Z", None)
        };
        assert_eq!(never.validate(None, log, at(NOW)).unwrap().missed, None);
        let not_asked = input("2026-11-28T00:00:00Z", None);
        assert_eq!(
            not_asked
                .validate(Some(disabled), log, at(NOW))
                .unwrap()
                .missed,
            None
        );
    }

    fn attempt(trigger: Trigger, outcome: AttemptOutcome, skip: Option<Skip>) -> Attempt {
        let hook = crate::testing::webhook("P");
        let message = DeliveryMessage {
            trigger,
            ..DeliveryMessage::for_event(
                Uuid::now_v7(),
                hook.project.clone(),
                EventName::RunCompleted,
                hook.id,
                serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            )
        };
        let mut attempt = Attempt::of(&message, at(NOW));
        attempt.outcome = outcome;
        attempt.skipped_reason = skip.map(|s| s.reason().to_owned());
        attempt
    }

    #[test]
    fn a_delivery_is_resent_when_its_latest_attempt_did_not_arrive_and_settles_its_event_when_a_resend_did()
     {
        use AttemptOutcome::*;
        let cases = [
            (Trigger::Event, Failed, None, Sighting::Resend),
            (
                Trigger::Event,
                Skipped,
                Some(Skip::Disabled),
                Sighting::Resend,
            ),
            (
                Trigger::Event,
                Skipped,
                Some(Skip::Unsubscribed),
                Sighting::Ignore,
            ),
            (Trigger::Event, Delivered, None, Sighting::Ignore),
            (Trigger::Redelivery, Delivered, None, Sighting::Settled),
            (Trigger::Recovery, Delivered, None, Sighting::Settled),
            (Trigger::Redelivery, Failed, None, Sighting::Resend),
            (
                Trigger::Recovery,
                Skipped,
                Some(Skip::Disabled),
                Sighting::Resend,
            ),
            (Trigger::Ping, Failed, None, Sighting::Ignore),
            (Trigger::Ping, Delivered, None, Sighting::Ignore),
        ];
        for (trigger, outcome, skip, sighting) in cases {
            assert_eq!(
                judge(&attempt(trigger, outcome, skip)),
                sighting,
                "{trigger:?} {outcome:?} {skip:?}"
            );
        }
    }

    #[test]
    fn a_step_releases_rate_deliveries_a_second_and_the_next_follows_without_a_gap() {
        assert_eq!(send_chunk(10), 100);
        assert_eq!(send_chunk(MAX_RATE), MAX_CHUNK);
        assert_eq!(send_chunk(0), 10);
        assert_eq!(send_chunk(1), 10);
        assert_eq!(MAX_CHUNK, 200);
        assert_eq!(SEND_STEP, Duration::from_secs(10));
        let first = Release::at(10, None, at(NOW));
        let delays: Vec<u64> = (0..25).map(|i| first.delay(i).as_secs()).collect();
        assert_eq!(&delays[..10], &[0; 10]);
        assert_eq!(&delays[10..20], &[1; 10]);
        assert_eq!(&delays[20..], &[2; 5]);
        assert_eq!(first.ends_after(100), SEND_STEP);
        assert_eq!(first.ends_after(25), Duration::from_secs(3));
        assert_eq!(first.ends_after(0), Duration::ZERO);
        // The next step comes a second early, and releases where this ends.
        assert_eq!(first.next_step(25), Duration::from_secs(2));
        assert_eq!(first.next_step(0), Duration::ZERO);
        let ends = at(NOW).after(first.ends_after(25));
        let next = Release::at(10, Some(ends), at(NOW).after(first.next_step(25)));
        assert_eq!(next.lead, 1);
        assert_eq!(next.delay(0), Duration::from_secs(1));
        assert_eq!(next.delay(10), Duration::from_secs(2));
        // A step that runs late starts at once; part of a second counts whole.
        assert_eq!(
            Release::at(10, Some(at(NOW)), at(NOW).after(Duration::from_secs(4))).lead,
            0
        );
        assert_eq!(
            Release::at(
                10,
                Some(at(NOW).after(Duration::from_millis(1200))),
                at(NOW)
            )
            .lead,
            2
        );
        assert_eq!(Release::at(0, None, at(NOW)).rate, 1);
    }

    #[test]
    fn a_slot_is_taken_only_early_in_its_second() {
        assert_eq!(
            slot_second(at("2026-12-01T10:00:05.000Z")),
            Some(1_796_119_205)
        );
        assert_eq!(
            slot_second(at("2026-12-01T10:00:05.799Z")),
            Some(1_796_119_205)
        );
        assert_eq!(slot_second(at("2026-12-01T10:00:05.800Z")), None);
        assert_eq!(slot_second(at("2026-12-01T10:00:05.999Z")), None);
        assert_eq!(SLOT_USABLE, Duration::from_millis(800));
    }

    #[test]
    fn a_recovery_finishes_when_all_is_found_queued_and_sent_or_skipped() {
        let mut progress = Progress {
            found: 3,
            queued: 3,
            ..Progress::default()
        };
        assert_eq!(progress.state(), State::Finding);
        progress.found_all = true;
        assert_eq!(progress.state(), State::Sending);
        progress.queued_all = true;
        progress.sent = 2;
        assert_eq!(progress.state(), State::Sending);
        progress.skipped = 1;
        assert!(progress.is_finished());
        assert_eq!(progress.state(), State::Finished);
        // Nothing found at all: finished once found and queued.
        let empty = Progress {
            found_all: true,
            queued_all: true,
            ..Progress::default()
        };
        assert!(empty.is_finished());
        assert!(Tally::default().is_empty());
        assert!(
            !Tally {
                skipped: 1,
                ..Tally::default()
            }
            .is_empty()
        );
    }

    #[test]
    fn a_step_reads_back_as_written_and_is_no_delivery_message() {
        let recovery = Recovery {
            id: Uuid::now_v7(),
            project: ProjectCode::parse("P").unwrap(),
            webhook_id: WebhookId::generate(),
            plan: Plan {
                window: Window {
                    from: at("2026-11-30T00:00:00Z"),
                    to: at(NOW),
                },
                missed: None,
                rate: 5,
            },
            created_at: at(NOW),
            finished_at: None,
        };
        for phase in [
            Phase::Failed { before: None },
            Phase::Missed {
                after: Some("x".into()),
            },
            Phase::Send {
                after: Some(Uuid::now_v7()),
                release_from: Some(at(NOW)),
            },
        ] {
            let step = Step::at(&recovery, phase);
            let body = step.encode().unwrap();
            assert_eq!(Step::decode(&body).unwrap(), step);
            assert!(DeliveryMessage::decode(&body).is_err());
            assert_eq!(step.recovery(), recovery);
        }
        assert_eq!(
            Step::first(&recovery).recovery_step.phase,
            Phase::Failed { before: None }
        );
    }

    #[test]
    fn only_subscribed_events_are_missed_and_never_the_ping() {
        let subscribed = [EventName::RunCompleted].into_iter().collect();
        assert!(misses(&subscribed, EventName::RunCompleted));
        assert!(!misses(&subscribed, EventName::CaseCreated));
        let all = [EventName::Ping].into_iter().collect();
        assert!(!misses(&all, EventName::Ping));
    }
}
