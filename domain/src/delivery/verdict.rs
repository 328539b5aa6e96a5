//! What came of one queued delivery: the batch response is built from these.

use crate::delivery::{Outcome, Skip};
use crate::lane::Lane;

/// Why a record goes back to the queue unsent, for SQS to deliver again
/// (and, after five receives, to the dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The message is not one this code can read.
    Undecodable,
    /// The webhooks of the batch could not be read.
    StoreUnavailable,
    /// Too little of the invocation was left to send it and record the outcome.
    OutOfTime,
    /// The queue it was to go to did not take it: a retry (the attempt is
    /// made again instead) or a lane move (the move is tried again).
    QueueUnavailable,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Undecodable => "returned: undecodable message",
            Fault::StoreUnavailable => "returned: storage unavailable",
            Fault::OutOfTime => "returned: not enough time left in the invocation",
            Fault::QueueUnavailable => "returned: the queue it was to go to did not take it",
        }
    }
}

/// What came of one queued delivery; the batch response is built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledged without a POST.
    Skipped(Skip),
    /// POSTed once; acknowledged whatever the endpoint answered, so a POST
    /// is never repeated by SQS.
    Sent(Outcome),
    /// Not sent; SQS delivers it again.
    Returned(Fault),
    /// Taken by another lane (the slow lane, or the waiting lane for a
    /// retry not due yet), then acknowledged here.
    Moved(Lane),
    /// A retry not due yet, left in the waiting lane invisible until it is
    /// due or for 12 hours (its visibility changed), whichever is sooner.
    Postponed,
}

impl Verdict {
    /// Whether the record goes back to its queue (a batch item failure).
    pub fn returns_to_queue(&self) -> bool {
        matches!(self, Verdict::Returned(_) | Verdict::Postponed)
    }

    /// The `outcome` field of the delivery's log line.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Skipped(skip) => skip.as_str(),
            Verdict::Sent(Outcome::Delivered { .. }) => "delivered",
            Verdict::Sent(Outcome::Failed { .. }) => "failed",
            Verdict::Returned(fault) => fault.as_str(),
            Verdict::Moved(Lane::Fast) => "moved to the fast lane",
            Verdict::Moved(Lane::Slow) => "moved to the slow lane",
            Verdict::Moved(Lane::Waiting) => "deferred: retry not due yet",
            Verdict::Postponed => "postponed: retry not due yet",
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::FailureReason;

    #[test]
    fn only_returned_records_go_back_to_the_queue() {
        let returned = [
            Verdict::Returned(Fault::Undecodable),
            Verdict::Returned(Fault::StoreUnavailable),
        ];
        for verdict in &returned {
            assert!(verdict.returns_to_queue());
        }
        for verdict in [
            Verdict::Skipped(Skip::Deleted),
            Verdict::Sent(Outcome::Delivered { status: 200 }),
            Verdict::Sent(Outcome::Failed {
                reason: FailureReason::Status(503),
            }),
        ] {
            assert!(!verdict.returns_to_queue(), "{verdict:?}");
        }
        assert_eq!(
            Verdict::Skipped(Skip::Disabled).label(),
            "skipped: webhook disabled"
        );
        assert_eq!(
            Verdict::Sent(Outcome::Delivered { status: 204 }).label(),
            "delivered"
        );
        assert_eq!(
            Verdict::Sent(Outcome::Failed {
                reason: FailureReason::Dns
            })
            .label(),
            "failed"
        );
        assert_eq!(returned[1].label(), "returned: storage unavailable");
    }
}
