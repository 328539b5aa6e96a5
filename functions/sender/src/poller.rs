//! Feeds the sender from a queue the way the Lambda event source mapping
//! does: receive up to 10 messages, hand them to [`Sender::handle`] as one
//! batch (each record naming its queue, as the mapping's event source ARN
//! does), delete what it acknowledged, and leave its batch item failures to
//! come back after the visibility timeout (or the one the sender set).
//! [`run`] keeps doing so, as one of a mapping's concurrent pollers. Used by
//! the local stack and tests.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use shared::ports::{DeliveryQueue, DeliveryStore, RecoveryProgress};

use crate::Sender;

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    pub received: usize,
    pub acknowledged: usize,
    pub returned: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("queue call failed")]
pub struct PollError(#[source] Box<dyn std::error::Error + Send + Sync>);

fn poll_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> PollError {
    PollError(Box::new(e))
}

/// Receives one batch (waiting up to `wait_seconds` for it) and handles it.
pub async fn poll_once<S: DeliveryStore + RecoveryProgress, Q: DeliveryQueue>(
    sender: &Sender<S, Q>,
    sqs: &Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Result<Poll, PollError> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(poll_error)?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(Poll::default());
    }
    // Only the queue's name matters to the sender.
    let source_arn = format!(
        "arn:aws:sqs:local:000000000000:{}",
        shared::domain::lane::queue_name(queue_url)
    );
    let mut event = SqsEvent::default();
    let mut receipts = Vec::with_capacity(messages.len());
    for message in messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.receipt_handle = message.receipt_handle.clone();
        record.body = message.body.clone();
        record.md5_of_body = message.md5_of_body.clone();
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(source_arn.clone());
        record.attributes = message
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        receipts.push((message.message_id, message.receipt_handle));
        event.records.push(record);
    }
    let received = receipts.len();
    let response = sender
        .handle(event, std::time::Instant::now() + crate::FUNCTION_TIMEOUT)
        .await;
    let returned: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
        .into_iter()
        .enumerate()
        .filter_map(|(i, (id, receipt))| {
            let id = id?;
            (!returned.contains(&id)).then_some((i, receipt?))
        })
        .map(|(i, receipt)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
        })
        .collect::<Result<_, _>>()
        .map_err(poll_error)?;
    let acknowledged = entries.len();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(poll_error)?;
    }
    Ok(Poll {
        received,
        acknowledged,
        returned: returned.len(),
    })
}

/// Polls `queue_url` for `sender` until `stopped` turns true: one of the
/// event source mapping's concurrent pollers. Errors are logged and the
/// poll tried again a second later.
pub async fn run<S: DeliveryStore + RecoveryProgress, Q: DeliveryQueue>(
    sender: std::sync::Arc<Sender<S, Q>>,
    sqs: Client,
    queue_url: String,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            polled = poll_once(&sender, &sqs, &queue_url, 1) => {
                if let Err(err) = polled {
                    tracing::error!(queue = shared::domain::lane::queue_name(&queue_url), error = %shared::error_chain(&err), "polling a delivery queue failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }
}
