//! The sender's part in bulk recoveries (`domain::recover`): it runs their
//! steps that come through the waiting lane, keeps each recovery's POSTs to
//! its rate, and counts the first attempts of its deliveries.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use shared::domain::delivery::{RECORD_MARGIN, Steps};
use shared::domain::recover::Progress;
use shared::domain::recover::{Paced, Step, Tally, slot_second};
use shared::domain::{DeliveryMessage, Outcome, ProjectCode, Timestamp, Verdict, WebhookId};
use shared::ports::{DeliveryQueue, DeliveryStore, RecoveryProgress};
use tokio::time::timeout_at;
use uuid::Uuid;

use crate::{Incoming, Sender};

/// How long a delivery over its recovery's rate waits before it is tried
/// again: the next second.
pub const OVER_RATE_WAIT: Duration = Duration::from_secs(1);

/// What the pace of a delivery's recovery allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// POST it now.
    Free,
    /// Its recovery's second is full: it goes to its own lane again,
    /// visible after [`OVER_RATE_WAIT`].
    Later,
    /// The count could not be taken: it returns to the queue.
    Unknown,
}

/// The slots of their recoveries' seconds a batch took for its deliveries.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    second: i64,
    /// Slots left, by recovery.
    granted: HashMap<Uuid, AtomicU32>,
    /// Recoveries whose count could not be taken.
    unknown: HashSet<Uuid>,
}

impl Slots {
    /// Whether `message` may be POSTed now: no recovery's, or one of its
    /// recovery's slots left while their second's usable part lasts.
    pub(crate) fn pace(&self, message: &DeliveryMessage) -> Slot {
        let Some(Paced { id, .. }) = message.recovery else {
            return Slot::Free;
        };
        if self.unknown.contains(&id) {
            return Slot::Unknown;
        }
        let took = self.granted.get(&id).is_some_and(|left| {
            left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        });
        if took && slot_second(Timestamp::now()) == Some(self.second) {
            Slot::Free
        } else {
            Slot::Later
        }
    }
}

/// The recovery step a record holds, if it is one.
pub(crate) fn step_of(body: &str) -> Option<Step> {
    Step::decode(body).ok()
}

/// The records that are a recovery's first attempts, by record id.
pub(crate) fn first_attempts(incoming: &[Incoming]) -> HashMap<String, Uuid> {
    incoming
        .iter()
        .filter(|record| record.message.attempt == 1)
        .filter_map(|record| Some((record.id.clone(), record.message.recovery?.id)))
        .collect()
}

/// The webhook each recovery of the batch delivers to.
pub(crate) fn webhooks_of(incoming: &[Incoming]) -> HashMap<Uuid, (ProjectCode, WebhookId)> {
    incoming
        .iter()
        .filter_map(|record| {
            let recovery = record.message.recovery?.id;
            Some((
                recovery,
                (record.message.project.clone(), record.message.webhook_id),
            ))
        })
        .collect()
}

/// What the batch's verdicts add to each recovery.
pub(crate) fn tallies(
    paced: &HashMap<String, Uuid>,
    verdicts: &[(String, Verdict)],
) -> HashMap<Uuid, Tally> {
    let mut tallies: HashMap<Uuid, Tally> = HashMap::new();
    for (id, verdict) in verdicts {
        let Some(recovery) = paced.get(id) else {
            continue;
        };
        let tally = tallies.entry(*recovery).or_default();
        match verdict {
            Verdict::Sent(Outcome::Delivered { .. }) => tally.delivered += 1,
            Verdict::Sent(Outcome::Failed { .. }) => tally.failed += 1,
            Verdict::Skipped(_) => tally.skipped += 1,
            // Not done with: it comes again.
            Verdict::Returned(_) | Verdict::Moved(_) | Verdict::Postponed => {}
        }
    }
    tallies.retain(|_, tally| !tally.is_empty());
    tallies
}

impl<S: DeliveryStore + RecoveryProgress, Q: DeliveryQueue> Sender<S, Q> {
    /// Runs the batch's recovery steps, each until the time the batch's
    /// bookkeeping needs; answers the ids of those that did not finish (SQS
    /// runs them again).
    pub(crate) async fn run_steps(&self, steps: Vec<(String, Step)>, ends: Instant) -> Vec<String> {
        if steps.is_empty() {
            return Vec::new();
        }
        let Some(runner) = &self.recoveries else {
            tracing::error!(
                steps = steps.len(),
                "recovery steps, but no recoveries here; returned to the queue"
            );
            return steps.into_iter().map(|(id, _)| id).collect();
        };
        let until = ends.checked_sub(RECORD_MARGIN * 2).unwrap_or(ends);
        stream::iter(steps)
            .map(|(id, step)| async move {
                let recovery = step.recovery_step.recovery;
                match timeout_at(ends.checked_sub(RECORD_MARGIN).unwrap_or(ends).into(), runner.run(step, until)).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(err)) => {
                        tracing::error!(recovery_id = %recovery, error = %shared::error_chain(&err), "recovery step failed; it runs again");
                        Some(id)
                    }
                    Err(_) => {
                        tracing::error!(recovery_id = %recovery, "recovery step out of time; it runs again");
                        Some(id)
                    }
                }
            })
            .buffer_unordered(self.concurrency)
            .filter_map(|failed| async move { failed })
            .collect()
            .await
    }

    /// Takes, for each recovery with deliveries in the batch, a slot of
    /// its current second per delivery, as many as its rate leaves (one
    /// write per recovery). Late in a second, it waits for the next one to
    /// begin first.
    pub(crate) async fn take_slots(&self, incoming: &[Incoming]) -> Slots {
        let mut wanted: HashMap<Uuid, (u32, u32)> = HashMap::new();
        for record in incoming {
            if let Some(Paced { id, rate }) = record.message.recovery {
                wanted.entry(id).or_insert((rate, 0)).1 += 1;
            }
        }
        if wanted.is_empty() {
            return Slots::default();
        }
        let now = Timestamp::now();
        let second = match slot_second(now) {
            Some(second) => second,
            None => {
                let into = now.as_datetime().timestamp_subsec_millis().min(999);
                tokio::time::sleep(Duration::from_millis(u64::from(1000 - into))).await;
                now.as_datetime().timestamp() + 1
            }
        };
        let takes = wanted.into_iter().map(|(id, (rate, count))| async move {
            let taken = self
                .store
                .take_recovery_slots(id, second, count, rate)
                .await;
            (id, taken)
        });
        let mut slots = Slots {
            second,
            ..Slots::default()
        };
        for (id, taken) in futures::future::join_all(takes).await {
            match taken {
                Ok(granted) => {
                    slots.granted.insert(id, AtomicU32::new(granted));
                }
                Err(err) => {
                    tracing::error!(recovery_id = %id, error = %shared::error_chain(&err), "could not count the recovery's pace; its deliveries return to the queue");
                    slots.unknown.insert(id);
                }
            }
        }
        slots
    }

    /// Adds the batch's first attempts to their recoveries' progress and
    /// marks each recovery that is now complete finished; bounded by the
    /// invocation, failures logged. Answers the recoveries this batch
    /// finished (the conditional write that marked each finished was its).
    pub(crate) async fn tally(
        &self,
        paced: &HashMap<String, Uuid>,
        verdicts: &[(String, Verdict)],
        ends: Instant,
    ) -> Vec<(Uuid, Progress)> {
        let by = Steps::new(ends).history_by();
        let counts = tallies(paced, verdicts).into_iter().map(|(recovery, tally)| async move {
            let counted = timeout_at(by.into(), async {
                let progress = self.store.tally_recovery(recovery, tally).await?;
                if progress.is_finished()
                    && self.store.finish_recovery(recovery, Timestamp::now()).await?
                {
                    tracing::info!(recovery_id = %recovery, "recovery finished");
                    return Ok(Some((recovery, progress)));
                }
                Ok::<_, shared::ports::StoreError>(None)
            })
            .await;
            match counted {
                Ok(Ok(finished)) => finished,
                Ok(Err(err)) => {
                    tracing::error!(recovery_id = %recovery, error = %shared::error_chain(&err), "could not count the recovery's progress");
                    None
                }
                Err(_) => {
                    tracing::error!(recovery_id = %recovery, "counting the recovery's progress did not finish in time");
                    None
                }
            }
        });
        futures::future::join_all(counts)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use shared::domain::{FailureReason, Fault, Lane, Skip};

    use super::*;

    #[test]
    fn a_batch_counts_first_attempts_of_recoveries_by_how_they_ended_and_nothing_that_comes_again()
    {
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let paced: HashMap<String, Uuid> = [
            ("a", one),
            ("b", one),
            ("c", one),
            ("d", two),
            ("e", two),
            ("f", two),
        ]
        .into_iter()
        .map(|(id, recovery)| (id.to_owned(), recovery))
        .collect();
        let verdicts = vec![
            (
                "a".to_owned(),
                Verdict::Sent(Outcome::Delivered { status: 200 }),
            ),
            (
                "b".to_owned(),
                Verdict::Sent(Outcome::Failed {
                    reason: FailureReason::Status(503),
                }),
            ),
            ("c".to_owned(), Verdict::Skipped(Skip::Disabled)),
            ("d".to_owned(), Verdict::Moved(Lane::Slow)),
            ("e".to_owned(), Verdict::Returned(Fault::StoreUnavailable)),
            ("f".to_owned(), Verdict::Postponed),
            // Not a recovery's.
            (
                "g".to_owned(),
                Verdict::Sent(Outcome::Delivered { status: 200 }),
            ),
        ];
        let tallies = tallies(&paced, &verdicts);
        assert_eq!(
            tallies,
            HashMap::from([(
                one,
                Tally {
                    delivered: 1,
                    failed: 1,
                    skipped: 1
                }
            )])
        );
    }

    #[test]
    fn a_delivery_gets_a_slot_while_its_recovery_has_some_left_and_others_always_do() {
        let recovery = Uuid::now_v7();
        let hook = shared::domain::WebhookId::generate();
        let message = |paced: Option<Paced>| {
            let event = shared::domain::StoredEvent {
                id: Uuid::now_v7(),
                project: shared::domain::ProjectCode::parse("P").unwrap(),
                event_name: shared::domain::EventName::RunCompleted,
                envelope: "{}".into(),
                created_at: Timestamp::now(),
            };
            let mut message = event.redelivery(hook).unwrap();
            message.recovery = paced;
            message
        };
        let paced = message(Some(Paced {
            id: recovery,
            rate: 5,
        }));
        let other = message(Some(Paced {
            id: Uuid::now_v7(),
            rate: 5,
        }));
        let now = Timestamp::now();
        let second = now.as_datetime().timestamp();
        let mut slots = Slots {
            second,
            ..Slots::default()
        };
        slots.granted.insert(recovery, AtomicU32::new(2));
        let usable = slot_second(Timestamp::now()) == Some(second);
        let first = slots.pace(&paced);
        let second_one = slots.pace(&paced);
        if usable && slot_second(Timestamp::now()) == Some(second) {
            assert_eq!((first, second_one), (Slot::Free, Slot::Free));
        }
        // Two granted, two used: the third waits, whatever the time.
        assert_eq!(slots.pace(&paced), Slot::Later);
        assert_eq!(slots.pace(&other), Slot::Later, "no slot taken for it");
        assert_eq!(slots.pace(&message(None)), Slot::Free);
        slots.unknown.insert(recovery);
        assert_eq!(slots.pace(&paced), Slot::Unknown);
        // A slot of a second that is over is no slot.
        let stale = Slots {
            second: second - 5,
            granted: HashMap::from([(recovery, AtomicU32::new(3))]),
            ..Slots::default()
        };
        assert_eq!(stale.pace(&paced), Slot::Later);
    }
}
