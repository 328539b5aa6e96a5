//! The delivery queue in SQS: `SendMessageBatch`, up to 10 messages and
//! 1 MiB a call, calls in parallel, failed entries retried before giving up.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::future::join_all;

use crate::ports::{DeliveryQueue, EnqueueError};

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most bytes SQS takes in one `SendMessageBatch` (all bodies together).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Seconds a received delivery stays invisible: 6x the sender's 30-second
/// timeout, as in `template.yaml`.
pub const VISIBILITY_TIMEOUT_SECS: u32 = 180;
/// Receives before a delivery moves to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// Seconds the delivery queue keeps a message (4 days).
pub const RETENTION_SECS: u32 = 4 * 24 * 3600;
/// Seconds the dead-letter queue keeps a message (14 days, the most SQS keeps).
pub const DEAD_LETTER_RETENTION_SECS: u32 = 14 * 24 * 3600;
/// Largest message either queue takes.
pub const MAX_MESSAGE_BYTES: u32 = 1024 * 1024;

/// Extra tries for entries SQS reports as failed (its own fault).
const ENTRY_RETRIES: usize = 2;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn from_sdk(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), url)
    }

    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one batch; answers how many were queued, and the last error.
    async fn send_batch(
        &self,
        bodies: &[&String],
    ) -> (usize, Option<Box<dyn std::error::Error + Send + Sync>>) {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut last_error = None;
        for _ in 0..=ENTRY_RETRIES {
            let entries = pending.iter().map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(bodies[i].as_str())
                    .build()
            });
            let entries: Result<Vec<_>, _> = entries.collect();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => return (bodies.len() - pending.len(), Some(Box::new(e))),
            };
            match self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let failed = out.failed();
                    if failed.is_empty() {
                        return (bodies.len(), None);
                    }
                    // Entries failed by the sender's fault would fail again.
                    if failed.iter().any(|f| f.sender_fault) {
                        let queued = bodies.len() - failed.len();
                        let codes: Vec<&str> = failed.iter().map(|f| f.code()).collect();
                        return (
                            queued,
                            Some(format!("SQS refused entries: {codes:?}").into()),
                        );
                    }
                    pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
                    last_error = Some(format!("SQS failed {} entries", pending.len()).into());
                }
                Err(e) => {
                    // The SDK already retried the call itself.
                    return (bodies.len() - pending.len(), Some(Box::new(e)));
                }
            }
        }
        (bodies.len() - pending.len(), last_error)
    }
}

/// The delivery queue and its dead-letter queue, created with the settings
/// `template.yaml` declares. Used by the local stack and the tests; answers
/// the two queue URLs.
pub async fn create_delivery_queues(
    client: &Client,
    name: &str,
) -> Result<(String, String), Box<dyn std::error::Error + Send + Sync>> {
    use aws_sdk_sqs::types::QueueAttributeName as Attr;

    let dead = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(
            Attr::MessageRetentionPeriod,
            DEAD_LETTER_RETENTION_SECS.to_string(),
        )
        .attributes(Attr::MaximumMessageSize, MAX_MESSAGE_BYTES.to_string())
        .send()
        .await?
        .queue_url
        .ok_or("no dead-letter queue URL")?;
    let dead_arn = client
        .get_queue_attributes()
        .queue_url(&dead)
        .attribute_names(Attr::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&Attr::QueueArn))
        .ok_or("no dead-letter queue ARN")?;
    let redrive = format!(
        r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#
    );
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(Attr::VisibilityTimeout, VISIBILITY_TIMEOUT_SECS.to_string())
        .attributes(Attr::MessageRetentionPeriod, RETENTION_SECS.to_string())
        .attributes(Attr::MaximumMessageSize, MAX_MESSAGE_BYTES.to_string())
        .attributes(Attr::RedrivePolicy, redrive)
        .send()
        .await?
        .queue_url
        .ok_or("no queue URL")?;
    Ok((queue, dead))
}

/// Groups bodies into batches SQS accepts: at most 10 entries and 1 MiB each.
pub fn batches(bodies: &[String]) -> Vec<Vec<&String>> {
    let mut out: Vec<Vec<&String>> = Vec::new();
    let mut size = 0;
    for body in bodies {
        let fits = out
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH_ENTRIES && size + body.len() <= MAX_BATCH_BYTES);
        if !fits {
            out.push(Vec::new());
            size = 0;
        }
        size += body.len();
        if let Some(batch) = out.last_mut() {
            batch.push(body);
        }
    }
    out
}

impl DeliveryQueue for SqsQueue {
    async fn enqueue(&self, bodies: Vec<String>) -> Result<usize, EnqueueError> {
        let total = bodies.len();
        let results = join_all(
            batches(&bodies)
                .into_iter()
                .map(|batch| async move { self.send_batch(&batch).await }),
        )
        .await;
        let queued = results.iter().map(|(n, _)| n).sum();
        match results.into_iter().find_map(|(_, e)| e) {
            None if queued == total => Ok(queued),
            source => Err(EnqueueError {
                queued,
                total,
                source,
            }),
        }
    }

    async fn enqueue_delayed(
        &self,
        body: String,
        delay: std::time::Duration,
    ) -> Result<(), EnqueueError> {
        // Whole seconds, rounded up: a message is never visible early.
        let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        let seconds = i32::try_from(whole.min(900)).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map(drop)
            .map_err(|e| EnqueueError {
                queued: 0,
                total: 1,
                source: Some(Box::new(e)),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let bodies: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let sizes: Vec<usize> = batches(&bodies).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn batches_stay_under_one_mebibyte() {
        let big = "x".repeat(300 * 1024);
        let bodies: Vec<String> = (0..7).map(|_| big.clone()).collect();
        let grouped = batches(&bodies);
        assert_eq!(
            grouped.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        for batch in grouped {
            assert!(batch.iter().map(|b| b.len()).sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }
}
