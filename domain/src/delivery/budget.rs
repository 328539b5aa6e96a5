//! How a sender invocation spends its time: the POST deadline, the read
//! before it and the margin kept to record what happened.

use std::time::{Duration, Instant};

/// The default request deadline: connecting, sending and the response head.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);
/// Time a sender invocation keeps in hand after its last POST, to record the
/// outcomes: a POST starts only if it can end this long before the
/// invocation does.
pub const RECORD_MARGIN: Duration = Duration::from_secs(2);
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
    fn the_default_deadline_is_15_seconds() {
        assert_eq!(DEFAULT_DEADLINE, Duration::from_secs(15));
    }
}
