//! How a sender invocation spends its time: the read, the POSTs and their
//! deadline, then the steps that record what happened, each with its own
//! reserve, so that the batch response always leaves in time.

use std::time::{Duration, Instant};

/// The default request deadline: connecting, sending and the response head.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);
/// Time a sender invocation keeps in hand after its last POST, to record the
/// outcomes: a POST starts only if it can end this long before the
/// invocation does. It is the four reserves below, in the order they are
/// spent.
pub const RECORD_MARGIN: Duration = Duration::from_secs(2);
/// The webhooks' writes after the POSTs get at least this long.
pub const WRITE_RESERVE: Duration = Duration::from_millis(750);
/// Kept for queueing the batch's retries (and its lane moves and
/// postponements) whatever the webhooks' writes took.
pub const QUEUE_RESERVE: Duration = Duration::from_millis(500);
/// Kept for the batch's one history write whatever the steps before took.
pub const HISTORY_RESERVE: Duration = Duration::from_millis(500);
/// Kept for the batch response: the handler answers at least this long
/// before the invocation ends, so Lambda never times it out (which would
/// return every record, delivered ones included).
pub const ANSWER_RESERVE: Duration = Duration::from_millis(250);

/// When each step after the POSTs must be done by, in an invocation that
/// ends at `ends`: each step stops where the later ones' reserves begin, so
/// a store that never answers costs its own step and nothing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    ends: Instant,
}

impl Steps {
    pub fn new(ends: Instant) -> Self {
        Self { ends }
    }

    /// The batch's read of its webhooks, and the writes a POST makes while
    /// it waits (a slow mark, a signing secret): done before any POST could
    /// have to end.
    pub fn read_by(self) -> Instant {
        self.before(RECORD_MARGIN)
    }

    /// The webhooks' writes after the POSTs.
    pub fn writes_by(self) -> Instant {
        self.before(QUEUE_RESERVE + HISTORY_RESERVE + ANSWER_RESERVE)
    }

    /// Retries, lane moves and postponements.
    pub fn queue_by(self) -> Instant {
        self.before(HISTORY_RESERVE + ANSWER_RESERVE)
    }

    /// The batch's history write, the last step before the answer.
    pub fn history_by(self) -> Instant {
        self.before(ANSWER_RESERVE)
    }

    fn before(self, reserve: Duration) -> Instant {
        self.ends.checked_sub(reserve).unwrap_or(self.ends)
    }
}
/// Time the sender allows the batch's one read of its webhooks.
pub const READ_BUDGET: Duration = Duration::from_secs(3);

/// Whether a POST with `post_deadline`, started at `now`, can end and be
/// recorded before the invocation ends at `ends`. One that cannot is not
/// started: its record goes back to the queue unsent, instead of the whole
/// batch (successes included) being retried after a Lambda timeout.
pub fn may_start(now: Instant, ends: Instant, post_deadline: Duration) -> bool {
    now.checked_add(post_deadline + RECORD_MARGIN)
        .is_some_and(|done| done <= ends)
}

/// The shortest sender timeout in which a batch of `batch` records, sent
/// `concurrency` at a time, all start: the read, one deadline per wave, and
/// the recording margin.
pub fn required_timeout(post_deadline: Duration, batch: u32, concurrency: u32) -> Duration {
    let waves = batch.div_ceil(concurrency.max(1));
    READ_BUDGET + post_deadline * waves + RECORD_MARGIN
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Fault, Verdict};

    #[test]
    fn a_post_starts_only_if_it_ends_and_is_recorded_in_the_invocation() {
        let now = Instant::now();
        let deadline = Duration::from_secs(15);
        let exactly = now + deadline + RECORD_MARGIN;
        assert!(may_start(now, exactly, deadline), "ends exactly in time");
        assert!(!may_start(
            now,
            exactly - Duration::from_millis(1),
            deadline
        ));
        assert!(may_start(now, now + Duration::from_secs(60), deadline));
        assert!(!may_start(now, now, deadline), "no time left");
        assert_eq!(
            Fault::OutOfTime.as_str(),
            "returned: not enough time left in the invocation"
        );
        assert!(Verdict::Returned(Fault::OutOfTime).returns_to_queue());
    }

    #[test]
    fn the_timeout_a_batch_needs_counts_its_waves() {
        let deadline = Duration::from_secs(15);
        let one_wave = READ_BUDGET + deadline + RECORD_MARGIN;
        assert_eq!(required_timeout(deadline, 10, 10), one_wave);
        assert_eq!(required_timeout(deadline, 10, 20), one_wave);
        assert_eq!(required_timeout(deadline, 10, 9), one_wave + deadline);
        assert_eq!(required_timeout(deadline, 10, 1), one_wave + deadline * 9);
        assert_eq!(
            required_timeout(deadline, 10, 0),
            one_wave + deadline * 9,
            "0 counts as 1"
        );
        assert_eq!(
            required_timeout(Duration::from_secs(25), 10, 10),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn each_step_keeps_the_later_steps_reserves_and_the_margin_is_their_sum() {
        assert_eq!(
            WRITE_RESERVE + QUEUE_RESERVE + HISTORY_RESERVE + ANSWER_RESERVE,
            RECORD_MARGIN
        );
        let ends = Instant::now() + Duration::from_secs(30);
        let steps = Steps::new(ends);
        assert_eq!(steps.read_by(), ends - Duration::from_secs(2));
        assert_eq!(steps.writes_by(), ends - Duration::from_millis(1250));
        assert_eq!(steps.queue_by(), ends - Duration::from_millis(750));
        assert_eq!(steps.history_by(), ends - Duration::from_millis(250));
        // A POST that may start ends before the writes begin, with the
        // writes' own reserve left.
        let start = ends - Duration::from_secs(17);
        assert!(may_start(start, ends, Duration::from_secs(15)));
        assert_eq!(
            steps.writes_by() - (start + Duration::from_secs(15)),
            WRITE_RESERVE
        );
    }

    #[test]
    fn the_default_deadline_is_15_seconds() {
        assert_eq!(DEFAULT_DEADLINE, Duration::from_secs(15));
    }
}
