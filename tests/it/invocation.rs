//! One sender invocation against the emulator and loopback receivers: its
//! steps after the POSTs each keep their share of the time, so a store that
//! never answers costs its own step only; and an attempt made once is never
//! erased by the same attempt coming back skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use integration_tests::receiver::Receiver;
use integration_tests::stack::{Stack, TEST_RETRY_SCHEDULE};
use serde_json::{Value, json};
use shared::adapters::{HttpPoster, SqsQueue};
use shared::domain::delivery::{ANSWER_RESERVE, RECORD_MARGIN};
use shared::domain::{
    Attempt, DeliveryLog, DeliveryMessage, Lane, SigningSecret, Timestamp, Webhook, WebhookId,
};
use shared::ports::{DeliveryStore, StoreError, WebhookKey};

/// The emulator's store, but a failure is never recorded: the write hangs
/// for as long as it is waited for, as a throttled table with SDK retries
/// can. Counts the writes it swallowed. With `refuse_history`, the history
/// write fails at once.
#[derive(Debug, Clone)]
struct Stalled {
    store: shared::adapters::DynamoStore,
    stalled: Arc<AtomicUsize>,
    refuse_history: bool,
}

impl shared::ports::RecoveryProgress for Stalled {
    async fn take_recovery_slots(
        &self,
        recovery: uuid::Uuid,
        second: i64,
        wanted: u32,
        limit: u32,
    ) -> Result<u32, shared::ports::StoreError> {
        self.store
            .take_recovery_slots(recovery, second, wanted, limit)
            .await
    }

    async fn tally_recovery(
        &self,
        recovery: uuid::Uuid,
        tally: shared::domain::recover::Tally,
    ) -> Result<shared::domain::recover::Progress, shared::ports::StoreError> {
        self.store.tally_recovery(recovery, tally).await
    }

    async fn finish_recovery(
        &self,
        recovery: uuid::Uuid,
        at: shared::domain::Timestamp,
    ) -> Result<bool, shared::ports::StoreError> {
        self.store.finish_recovery(recovery, at).await
    }
}

impl DeliveryStore for Stalled {
    async fn get_many(
        &self,
        keys: &[WebhookKey],
    ) -> Result<HashMap<WebhookId, Webhook>, StoreError> {
        self.store.get_many(keys).await
    }

    async fn record_failures(
        &self,
        _webhook: &Webhook,
        _at: Timestamp,
        _reason: &str,
        _due_now: bool,
        _count: u32,
    ) -> Result<bool, StoreError> {
        self.stalled.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn record_recovery(
        &self,
        webhook: &Webhook,
        slow: bool,
        at: Timestamp,
    ) -> Result<Option<shared::ports::Cleared>, StoreError> {
        self.store.record_recovery(webhook, slow, at).await
    }

    async fn mark_slow(&self, webhook: &Webhook, at: Timestamp) -> Result<(), StoreError> {
        self.store.mark_slow(webhook, at).await
    }

    async fn disable_gone(&self, webhook: &Webhook, at: Timestamp) -> Result<bool, StoreError> {
        self.store.disable_gone(webhook, at).await
    }

    async fn claim_exhausted(
        &self,
        webhook: &Webhook,
        delivery: uuid::Uuid,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.store.claim_exhausted(webhook, delivery, until).await
    }

    async fn assign_signing_secret(
        &self,
        webhook: &Webhook,
        fresh: SigningSecret,
    ) -> Result<SigningSecret, StoreError> {
        self.store.assign_signing_secret(webhook, fresh).await
    }

    async fn record_attempts(
        &self,
        attempts: &[Attempt],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        if self.refuse_history {
            return Err(StoreError::Unavailable("throttled".into()));
        }
        self.store.record_attempts(attempts, expires_at).await
    }
}

/// An SQS batch of these messages, each with its name as message id.
fn batch(messages: &[(&str, &DeliveryMessage)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (id, message) in messages {
        let mut record = SqsMessage::default();
        record.message_id = Some((*id).to_owned());
        record.body = Some(message.encode().unwrap());
        event.records.push(record);
    }
    event
}

async fn attempts(stack: &Stack, project: &str, id: &str) -> Vec<Value> {
    let reply = stack
        .api
        .admin(
            "GET",
            &format!("/projects/{project}/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    reply.body["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_webhook_write_that_never_ends_leaves_the_retry_the_history_and_the_answer_their_time() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let failing = stack
        .api
        .create_webhook(
            "TIME",
            json!({"title": "failing", "endpoint": rx.url("/failing?status=503"), "events": ["run.completed"], "retry_policy": "standard"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let healthy = stack
        .webhook("TIME", &rx.url("/healthy"), &["run.completed"], None)
        .await;
    let to_failing = stack.first_message("TIME", &failing).await.1;
    let to_healthy = stack.first_message("TIME", &healthy).await.1;
    let stalled = Arc::new(AtomicUsize::new(0));
    let store = Stalled {
        store: stack.api.store.clone(),
        stalled: stalled.clone(),
        refuse_history: false,
    };
    // A 1-second POST deadline and an invocation with just enough time for
    // the POSTs to start: they end where the recording margin begins.
    let deadline = Duration::from_secs(1);
    let http = HttpPoster::new(local_stack::loopback_policy(), deadline).unwrap();
    let sdk = integration_tests::sdk_config().await;
    let sender = sender::Sender::new(store, http, 10)
        .with_lanes(
            SqsQueue::from_sdk(&sdk, stack.api.queue_urls.clone()),
            stack.api.queue_urls.names(),
            TEST_RETRY_SCHEDULE.to_vec(),
        )
        .with_history(DeliveryLog::default());
    let ends = Instant::now() + deadline + RECORD_MARGIN + Duration::from_millis(300);
    let response = sender
        .handle(
            batch(&[("failing", &to_failing), ("healthy", &to_healthy)]),
            ends,
        )
        .await;
    let answered = Instant::now();
    assert_eq!(
        stalled.load(Ordering::SeqCst),
        1,
        "the failure's write hung"
    );
    assert!(
        answered <= ends - ANSWER_RESERVE,
        "answered {:?} after its reserve began",
        answered.saturating_duration_since(ends - ANSWER_RESERVE)
    );
    assert!(
        response.batch_item_failures.is_empty(),
        "both were POSTed and stand: {:?}",
        response.batch_item_failures
    );
    assert_eq!(rx.at("/failing").len(), 1);
    assert_eq!(rx.at("/healthy").len(), 1);
    let [visible, in_flight, delayed] = stack.depth(Lane::Slow).await;
    assert_eq!(
        visible + in_flight + delayed,
        1,
        "the retry of the failure was queued"
    );
    let failed = attempts(&stack, "TIME", &failing).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["outcome"], "failed");
    assert_eq!(failed[0]["status"], 503);
    let delivered = attempts(&stack, "TIME", &healthy).await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["outcome"], "delivered");
}

#[tokio::test]
async fn an_attempt_that_comes_back_to_a_disabled_webhook_keeps_its_post_in_the_history() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .api
        .create_webhook(
            "BACK",
            json!({"title": "back", "endpoint": rx.url("/back?status=503"), "events": ["run.completed"], "retry_policy": "standard"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = stack.first_message("BACK", &id).await.1;
    // No queue takes the retry: the attempt is POSTed, recorded and
    // returned to its queue.
    let http = HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2)).unwrap();
    let sender = sender::Sender::new(stack.api.store.clone(), http, 10)
        .with_lanes(
            sender::NoRetries,
            stack.api.queue_urls.names(),
            TEST_RETRY_SCHEDULE.to_vec(),
        )
        .with_history(DeliveryLog::default());
    let first = sender
        .handle(
            batch(&[("back", &message)]),
            integration_tests::sender_deadline(),
        )
        .await;
    assert_eq!(first.batch_item_failures.len(), 1, "returned to the queue");
    // The owner disables the webhook; the same attempt comes back.
    let reply = stack
        .api
        .admin(
            "PATCH",
            &format!("/projects/BACK/webhooks/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(reply.status, axum::http::StatusCode::OK);
    let again = sender
        .handle(
            batch(&[("back", &message)]),
            integration_tests::sender_deadline(),
        )
        .await;
    assert!(again.batch_item_failures.is_empty(), "skipped");
    assert_eq!(rx.at("/back").len(), 1, "POSTed once");
    let recorded = attempts(&stack, "BACK", &id).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["outcome"], "failed", "{recorded:?}");
    assert_eq!(recorded[0]["status"], 503);
    assert_eq!(recorded[0]["delivery_id"], message.delivery_id.to_string());
}

#[tokio::test]
async fn a_history_write_that_fails_is_published_as_a_metric_and_the_delivery_stands() {
    let stack = Stack::start().await;
    let rx = Receiver::start().await;
    let id = stack
        .webhook("LOST", &rx.url("/lost"), &["run.completed"], None)
        .await;
    let message = stack.first_message("LOST", &id).await.1;
    let store = Stalled {
        store: stack.api.store.clone(),
        stalled: Arc::default(),
        refuse_history: true,
    };
    let http = HttpPoster::new(local_stack::loopback_policy(), Duration::from_secs(2)).unwrap();
    let sender = sender::Sender::new(store, http, 10).with_history(DeliveryLog::default());
    let (response, logs) = integration_tests::logged(sender.handle(
        batch(&[("lost", &message)]),
        integration_tests::sender_deadline(),
    ))
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "delivered, acknowledged"
    );
    assert_eq!(rx.at("/lost").len(), 1);
    assert!(
        logs.contains("could not record the delivery history"),
        "{logs}"
    );
    assert_eq!(
        integration_tests::metric_values(&logs, "HistoryWritesFailed"),
        [1],
        "{logs}"
    );
}
