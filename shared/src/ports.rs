//! What the functions need from the outside world, as small traits.
//! Adapters over AWS live in [`crate::adapters`]; tests and benchmarks may
//! bring in-memory implementations.

use std::collections::HashMap;
use std::future::Future;

use uuid::Uuid;

use crate::domain::history::{
    AttemptCursor, Recovery as HistoryRecovery, StatusFilter, SuccessSearch,
};
use crate::domain::recover::{Progress, Recovery, Tally, Window};
use crate::domain::{
    Attempt, EventName, IdempotencyKey, Lane, Mail, ProjectCode, SigningSecret, StoredEvent,
    Timestamp, TokenHash, TokenId, TokenRecord, Webhook, WebhookChanges, WebhookId,
};

/// Why a storage call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("the project already holds the maximum of {0} webhooks")]
    LimitReached(u32),
    /// Concurrent changes kept the request from applying; nothing was changed
    /// by it, and trying again may succeed.
    #[error("changed concurrently")]
    Conflict,
    /// The store could not be reached or refused the call; worth retrying.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored item could not be read back; retrying will not help.
    #[error("stored item is malformed")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One page of a listing; `next` is where the following page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C = WebhookId> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Webhook configuration, as the config API needs it.
pub trait WebhookStore: Send + Sync {
    /// Stores a new webhook; never overwrites. Fails with
    /// [`StoreError::LimitReached`] when the project is full.
    fn create(&self, webhook: &Webhook) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get(
        &self,
        project: &ProjectCode,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<Webhook>, StoreError>> + Send;

    /// Up to `limit` webhooks of a project in creation order, after `after`.
    fn list(
        &self,
        project: &ProjectCode,
        limit: u32,
        after: Option<WebhookId>,
    ) -> impl Future<Output = Result<Page<Webhook>, StoreError>> + Send;

    /// Applies only the given changes, so concurrent updates of different
    /// fields both hold. Re-enabling a disabled webhook clears its failure
    /// state. Answers the webhook as changed, never a state the change did not
    /// produce: [`StoreError::Conflict`] when a concurrent write kept it from
    /// applying.
    fn update(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        changes: &WebhookChanges,
        now: Timestamp,
    ) -> impl Future<Output = Result<Updated, StoreError>> + Send;

    fn delete(
        &self,
        project: &ProjectCode,
        id: WebhookId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The webhook, with its signing secret; one stored before deliveries
    /// were signed gets `fresh` (unless a concurrent write gave it one
    /// first). `None` when there is no such webhook.
    fn signing_secret(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        fresh: SigningSecret,
    ) -> impl Future<Output = Result<Option<Webhook>, StoreError>> + Send;

    /// Makes `new` the signing secret; the one it replaces keeps signing
    /// beside it until `overlap_until`. Refused while the previous
    /// rotation's overlap lasts at `now`: the secret it promised to keep
    /// would be dropped early.
    fn rotate_signing_secret(
        &self,
        project: &ProjectCode,
        id: WebhookId,
        new: SigningSecret,
        now: Timestamp,
        overlap_until: Timestamp,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;
}

/// A webhook as an update left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    pub webhook: Webhook,
    /// This update turned the webhook from disabled to enabled (of two
    /// updates racing to re-enable it, one).
    pub re_enabled: bool,
}

/// What a success's write cleared: the failure it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    pub failing_since: Timestamp,
    pub failures: u64,
}

/// What came of a signing-secret rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The new secret signs; the replaced one beside it until the overlap
    /// ends.
    Rotated(SigningSecret),
    NotFound,
    /// A previous rotation's overlap lasts until `until`: rotating now
    /// would drop a secret receivers were promised until then.
    Overlapping {
        until: Timestamp,
    },
}

/// Project tokens, stored as hashes.
pub trait TokenStore: Send + Sync {
    fn put_token(
        &self,
        record: &TokenRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn find_token(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Deletes the token if it belongs to `project`; otherwise `NotFound`.
    fn revoke_token(
        &self,
        project: &ProjectCode,
        id: &TokenId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The webhook key a queued delivery names.
pub type WebhookKey = (ProjectCode, WebhookId);

/// What the sender needs: the batch's webhooks, and a place to record outcomes.
pub trait DeliveryStore: Send + Sync {
    /// The webhooks behind these keys, by id, in as few reads as the store
    /// allows. A key without a webhook (deleted) is absent from the map.
    fn get_many(
        &self,
        keys: &[WebhookKey],
    ) -> impl Future<Output = Result<HashMap<WebhookId, Webhook>, StoreError>> + Send;

    /// Records `count` failed deliveries, the last at `at` for `reason`:
    /// keeps the first `failing_since`, sets the last failure, counts them,
    /// and files the webhook in the sweeper's index. Does nothing if the
    /// webhook was deleted or disabled meanwhile. With `due_now`, files it
    /// as due for disabling at the next sweep. `true` when this write
    /// began the failure: none was recorded before it (of two writers
    /// racing on a healthy webhook, one).
    fn record_failures(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
        due_now: bool,
        count: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records one failed delivery ([`DeliveryStore::record_failures`]).
    fn record_failure(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
        due_now: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.record_failures(webhook, at, reason, due_now, 1)
    }

    /// Clears the failure state after a success, only while the webhook is
    /// enabled and owes no auto-disable e-mail (a sweep that disabled it
    /// meanwhile keeps its notice). `slow` keeps (or sets) its slow mark;
    /// otherwise the mark goes too, and the webhook is back in the fast lane.
    /// Answers the failure this write ended, if it ended one.
    fn record_recovery(
        &self,
        webhook: &Webhook,
        slow: bool,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<Cleared>, StoreError>> + Send;

    /// Marks the webhook slow since `at` (unless it is marked already), so
    /// that its next deliveries take the slow lane. Only while it is enabled.
    fn mark_slow(
        &self,
        webhook: &Webhook,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Disables the webhook at once because its endpoint answered 410 Gone
    /// (with `DisableOnGone`), records the failure, and files the owner's
    /// e-mail for the next sweep, as an auto-disable does. Only while the
    /// webhook is enabled: a sweep or a person that disabled it first wins.
    /// `true` when this write disabled it.
    fn disable_gone(
        &self,
        webhook: &Webhook,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims the end of `delivery`'s retries (its last attempt failed),
    /// remembered until `until`: `true` for the first claim, `false` for a
    /// repeat (SQS delivered that attempt twice).
    fn claim_exhausted(
        &self,
        webhook: &Webhook,
        delivery: Uuid,
        until: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The signing secret of a webhook stored before deliveries were signed:
    /// `fresh`, stored, unless a concurrent write gave it one first (then
    /// that one). Deliveries are never sent unsigned.
    fn assign_signing_secret(
        &self,
        webhook: &Webhook,
        fresh: SigningSecret,
    ) -> impl Future<Output = Result<SigningSecret, StoreError>> + Send;

    /// Adds the batch's attempts to the delivery history, kept until
    /// `expires_at`, in as few calls as the store allows (DynamoDB: one
    /// `BatchWriteItem` per 25); items the store left unprocessed are sent
    /// again until it takes them or the caller's deadline stops it.
    fn record_attempts(
        &self,
        attempts: &[Attempt],
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The delivery history, as the config API reads and extends it.
pub trait HistoryStore: Send + Sync {
    /// Stores a published event once, kept until `expires_at`.
    fn put_event(
        &self,
        event: &StoredEvent,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stored event, if it is the project's and has not expired.
    fn get_event(
        &self,
        project: &ProjectCode,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<StoredEvent>, StoreError>> + Send;

    /// Up to `limit` attempts to a webhook, newest delivery first (its
    /// attempts last first), after `after`; only those with `filter`'s
    /// outcome when given.
    fn list_attempts(
        &self,
        project: &ProjectCode,
        webhook: WebhookId,
        filter: Option<StatusFilter>,
        limit: u32,
        after: Option<AttemptCursor>,
    ) -> impl Future<Output = Result<Page<Attempt, AttemptCursor>, StoreError>> + Send;

    /// Every recorded attempt of one delivery to the webhook, first first.
    fn delivery_attempts(
        &self,
        project: &ProjectCode,
        webhook: WebhookId,
        delivery: Uuid,
    ) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;
}

/// Some messages could not be queued.
#[derive(Debug, thiserror::Error)]
#[error("queued {queued} of {total} messages")]
pub struct EnqueueError {
    pub queued: usize,
    pub total: usize,
    /// The positions (in the bodies given) of the messages not queued.
    pub failed: Vec<usize>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EnqueueError {
    /// One message that was not queued, for `source` (none: nowhere to
    /// queue it).
    pub fn one(source: Option<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::none_of(1, source)
    }

    /// None of `total` messages was queued.
    pub fn none_of(total: usize, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            queued: 0,
            total,
            failed: (0..total).collect(),
            source,
        }
    }
}

/// What a publish with an idempotency key found when it claimed the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishClaim {
    /// The key is new: this publish holds it.
    Fresh,
    /// The key's publish is done: answer what it answered.
    Done { event_id: Uuid, deliveries: usize },
    /// The key's publish began and did not finish (it failed part way, or
    /// died): this publish now holds it, and queues the subscribers not in
    /// `queued`, for the same event.
    Resume {
        event_id: Uuid,
        timestamp: i64,
        queued: std::collections::BTreeSet<WebhookId>,
    },
    /// The key was used with another body.
    Mismatch,
    /// Another publish with this key is under way.
    InProgress,
}

/// Idempotency keys of publishes, kept for `domain::idempotency`'s window.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` at `now` for a publish of the body `fingerprint`, as
    /// event `event_id` at `timestamp`, remembered until `expires_at`; or
    /// says what an earlier publish with the key left. Two claims at once:
    /// one is `Fresh` (or `Resume`), the other `InProgress`.
    fn claim_publish(
        &self,
        project: &ProjectCode,
        key: &IdempotencyKey,
        claim: PublishAttempt<'_>,
    ) -> impl Future<Output = Result<PublishClaim, StoreError>> + Send;

    /// Records `queued` (the webhooks this claim queued) and whether the
    /// publish is `done`; not done, the key is released for a repeat. Only
    /// while the claim made at `claimed_at` holds.
    fn settle_publish(
        &self,
        project: &ProjectCode,
        key: &IdempotencyKey,
        claimed_at: Timestamp,
        queued: &[WebhookId],
        done: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The publish that claims an idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct PublishAttempt<'a> {
    pub fingerprint: &'a str,
    pub event_id: Uuid,
    pub timestamp: i64,
    pub now: Timestamp,
    pub expires_at: Timestamp,
}

/// The delivery queues: the fast and slow lanes, and the waiting lane of
/// retries not due yet (`domain::lane`).
pub trait DeliveryQueue: Send + Sync {
    /// Queues every body in `lane`, or says how many made it. `group` (the
    /// project) keeps tenants fair in the slow lane: SQS serves the groups
    /// of a standard queue fairly when one of them has a backlog.
    fn enqueue(
        &self,
        lane: Lane,
        group: &str,
        bodies: Vec<String>,
    ) -> impl Future<Output = Result<usize, EnqueueError>> + Send;

    /// Queues every body in `lane`, each invisible for its delay (at most
    /// 15 minutes), or says which did not make it.
    fn enqueue_paced(
        &self,
        lane: Lane,
        group: &str,
        bodies: Vec<(String, std::time::Duration)>,
    ) -> impl Future<Output = Result<usize, EnqueueError>> + Send;

    /// Queues one body in `lane`, invisible for `delay` (at most 15 minutes).
    fn enqueue_one(
        &self,
        lane: Lane,
        group: &str,
        body: String,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), EnqueueError>> + Send;

    /// Keeps a received message of the waiting lane invisible for `delay`
    /// (at most 12 hours) from now, by its receipt handle.
    fn postpone(
        &self,
        receipt: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<(), EnqueueError>> + Send;
}

/// The per-project publish share.
pub trait RateStore: Send + Sync {
    /// Counts one publish of `project` in the window `window` (Unix
    /// seconds), unless `limit` are counted already: `false` then, and
    /// nothing changes. Concurrent callers never count past the limit.
    fn take_publish(
        &self,
        project: &ProjectCode,
        window: i64,
        limit: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Items found, and how many items the store read to find them.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<T> {
    pub items: Vec<T>,
    pub read: usize,
}

/// What the sweeper needs: the due webhooks, conditional disabling, and the
/// bookkeeping that makes each auto-disable send exactly one e-mail.
pub trait SweepStore: Send + Sync {
    /// Enabled webhooks failing since before `cutoff`, and those the sender
    /// marked due at once; read from the sparse index, never by a scan.
    fn due(
        &self,
        cutoff: Timestamp,
    ) -> impl Future<Output = Result<Found<Webhook>, StoreError>> + Send;

    /// Disables the webhook if it is still enabled and still failing since
    /// the time it was read with, and marks its e-mail pending; answers the
    /// disabled webhook. `None` when a success or a re-enable won the race.
    fn disable(
        &self,
        webhook: &Webhook,
        at: Timestamp,
        reason: &str,
    ) -> impl Future<Output = Result<Option<Webhook>, StoreError>> + Send;

    /// When an attempt to the webhook was delivered after `since` (the
    /// latest found), looking at deliveries created from a day before it;
    /// [`SuccessSearch::GaveUp`] when the search stopped before it could
    /// tell.
    fn delivered_after(
        &self,
        webhook: &Webhook,
        since: Timestamp,
    ) -> impl Future<Output = Result<SuccessSearch, StoreError>> + Send;

    /// Applies `recovery` to a webhook still enabled and failing as it was
    /// read (same `failing_since` and `last_failure_at`); `false` when a
    /// concurrent write changed it first.
    fn recover(
        &self,
        webhook: &Webhook,
        recovery: HistoryRecovery,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Disabled webhooks whose e-mail is not sent yet.
    fn pending_notices(&self) -> impl Future<Output = Result<Vec<Webhook>, StoreError>> + Send;

    /// Takes the pending e-mail for this sweep (the claim is `now`), unless
    /// another sweep holds a claim made after `stale_before` or the e-mail
    /// waits for a later day. `false` when it is taken, sent or waiting.
    fn claim_notice(
        &self,
        webhook: &Webhook,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The e-mail of the claim made at `claimed_at` went out at `at`, or was
    /// refused for good: the notice is done. Only while that claim holds:
    /// `false` when the notice is another one by now (the webhook was
    /// re-enabled and disabled again meanwhile) or another sweep took over.
    fn notice_sent(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The e-mail of the claim made at `claimed_at` did not go out: leave it
    /// pending for the next sweep. Only while that claim holds.
    fn release_notice(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The e-mail of the claim made at `claimed_at` is over its project's
    /// day of e-mails: it stays pending, and no sweep claims it before
    /// `until` (the next day's allowance). Only while that claim holds.
    fn defer_notice(
        &self,
        webhook: &Webhook,
        claimed_at: Timestamp,
        until: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Counts one more auto-disable e-mail of `project` on `day`, unless
    /// `limit` are counted already: `false` then, and nothing changes. Two
    /// sweeps at once never count past the limit. The count is kept until
    /// `expires_at`.
    fn count_notice(
        &self,
        project: &ProjectCode,
        day: &str,
        limit: u32,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes back a count whose e-mail did not go out.
    fn uncount_notice(
        &self,
        project: &ProjectCode,
        day: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Why an e-mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The mail service refused this message for good (a recipient address
    /// it cannot send to, content it does not accept): sending the same mail
    /// again cannot succeed.
    #[error("the mail service refused the message")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The mail service refused for another reason (e.g. an unverified
    /// sender identity) or could not be reached: it may work later.
    #[error("e-mail not sent")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Sending e-mail.
pub trait Mailer: Send + Sync {
    fn send(&self, mail: &Mail) -> impl Future<Output = Result<(), MailError>> + Send;
}

/// What the sender needs of a bulk recovery (`domain::recover`): the pace
/// and the progress of its deliveries.
pub trait RecoveryProgress: Send + Sync {
    /// Counts up to `wanted` POSTs of `recovery` in `second` (Unix
    /// seconds), as many as fit under `limit`; answers how many it counted.
    /// Concurrent senders never count past the limit.
    fn take_recovery_slots(
        &self,
        recovery: Uuid,
        second: i64,
        wanted: u32,
        limit: u32,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Adds a batch's first attempts of the recovery's deliveries to its
    /// progress; answers the progress after it.
    fn tally_recovery(
        &self,
        recovery: Uuid,
        tally: Tally,
    ) -> impl Future<Output = Result<Progress, StoreError>> + Send;

    /// Marks the recovery finished at `at`, once: `true` for the one call
    /// that did (a sender and a step may both see it end).
    fn finish_recovery(
        &self,
        recovery: Uuid,
        at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A project's published event, as the `events` index finds it by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: Uuid,
    pub name: EventName,
}

/// A recovery's bookkeeping: the recovery, its marks of the events it
/// found (one per event: a recovery sends an event once), and finding
/// events by time.
pub trait RecoveryStore: RecoveryProgress + HistoryStore {
    /// Stores a new recovery, kept until `expires_at`.
    fn create_recovery(
        &self,
        recovery: &Recovery,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The recovery and its progress, if it is the project's.
    fn get_recovery(
        &self,
        project: &ProjectCode,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<(Recovery, Progress)>, StoreError>> + Send;

    /// Marks the events first seen by the recovery (`settled`: a resend
    /// delivered it, nothing to send), ignoring those it marked before;
    /// counts the new unsettled ones as found, and with `found_all` says
    /// finding is over. Answers the progress after it.
    fn record_found(
        &self,
        recovery: &Recovery,
        seen: &[(Published, bool)],
        found_all: bool,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<Progress, StoreError>> + Send;

    /// Up to `limit` events the recovery found to send, oldest first, after
    /// `after`.
    fn found_events(
        &self,
        recovery: Uuid,
        after: Option<Uuid>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Published, Uuid>, StoreError>> + Send;

    /// Counts deliveries queued, and events found that are no longer kept;
    /// with `queued_all`, says everything found is queued. Answers the
    /// progress after it.
    fn record_queued(
        &self,
        recovery: Uuid,
        queued: u64,
        expired: u64,
        queued_all: bool,
    ) -> impl Future<Output = Result<Progress, StoreError>> + Send;

    /// Up to `limit` events of the project published in `window`, oldest
    /// first, after `after` (a position this answered before).
    fn events_between(
        &self,
        project: &ProjectCode,
        window: Window,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Published, String>, StoreError>> + Send;

    /// The stored events of the project among `ids` that are still kept.
    fn get_events(
        &self,
        project: &ProjectCode,
        ids: &[Uuid],
    ) -> impl Future<Output = Result<HashMap<Uuid, StoredEvent>, StoreError>> + Send;
}
