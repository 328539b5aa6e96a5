//! The delivery lanes in SQS (`domain::lane`): the fast, slow and waiting
//! queues. Publishing uses `SendMessageBatch`, up to 10 messages and 1 MiB a
//! call, calls in parallel, failed entries retried before giving up.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::future::join_all;

use crate::domain::Lane;
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

/// The URLs of the three lanes' queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneUrls {
    pub fast: String,
    pub slow: String,
    pub waiting: String,
}

impl LaneUrls {
    /// The queue names, to tell the lane of a received record.
    pub fn names(&self) -> crate::domain::LaneNames {
        crate::domain::LaneNames::from_urls(&self.fast, &self.slow, &self.waiting)
    }

    pub fn url(&self, lane: Lane) -> &str {
        match lane {
            Lane::Fast => &self.fast,
            Lane::Slow => &self.slow,
            Lane::Waiting => &self.waiting,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    urls: LaneUrls,
}

impl SqsQueue {
    pub fn from_sdk(sdk: &aws_config::SdkConfig, urls: LaneUrls) -> Self {
        Self::new(Client::new(sdk), urls)
    }

    pub fn new(client: Client, urls: LaneUrls) -> Self {
        Self { client, urls }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn urls(&self) -> &LaneUrls {
        &self.urls
    }

    /// Sends one batch; answers how many were queued, and the last error.
    async fn send_batch(
        &self,
        url: &str,
        group: Option<&str>,
        bodies: &[&String],
        delays: &[i32],
    ) -> (Vec<usize>, Option<Box<dyn std::error::Error + Send + Sync>>) {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut last_error = None;
        for _ in 0..=ENTRY_RETRIES {
            let entries = pending.iter().map(|&i| {
                let delay = delays.get(i).copied().filter(|d| *d > 0);
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(bodies[i].as_str())
                    .set_message_group_id(group.map(str::to_owned))
                    .set_delay_seconds(delay.map(|d| d.min(900)))
                    .build()
            });
            let entries: Result<Vec<_>, _> = entries.collect();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => return (pending, Some(Box::new(e))),
            };
            match self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let failed = out.failed();
                    if failed.is_empty() {
                        return (Vec::new(), None);
                    }
                    // Entries failed by the sender's fault would fail again.
                    if failed.iter().any(|f| f.sender_fault) {
                        let codes: Vec<&str> = failed.iter().map(|f| f.code()).collect();
                        let refused = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
                        return (
                            refused,
                            Some(format!("SQS refused entries: {codes:?}").into()),
                        );
                    }
                    pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
                    last_error = Some(format!("SQS failed {} entries", pending.len()).into());
                }
                Err(e) => {
                    // The SDK already retried the call itself.
                    return (pending, Some(Box::new(e)));
                }
            }
        }
        (pending, last_error)
    }
}

impl SqsQueue {
    /// Queues every body in `lane`, the `i`-th invisible for `delays[i]`
    /// seconds (none when `delays` is shorter); answers which were not
    /// queued.
    async fn enqueue_delayed(
        &self,
        lane: Lane,
        group: &str,
        bodies: Vec<String>,
        delays: &[i32],
    ) -> Result<usize, EnqueueError> {
        let total = bodies.len();
        let url = self.urls.url(lane);
        let group = group_in(lane, group);
        // Each batch's first body's position, to name the failed ones.
        let mut start = 0;
        let sends = batches(&bodies).into_iter().map(|batch| {
            let offset = start;
            start += batch.len();
            let delays = delays.get(offset..).unwrap_or_default();
            async move {
                let (failed, error) = self.send_batch(url, group, &batch, delays).await;
                (
                    failed.into_iter().map(|i| i + offset).collect::<Vec<_>>(),
                    error,
                )
            }
        });
        let results = join_all(sends).await;
        let mut failed: Vec<usize> = Vec::new();
        let mut source = None;
        for (lost, error) in results {
            failed.extend(lost);
            source = source.or(error);
        }
        failed.sort_unstable();
        failed.dedup();
        if failed.is_empty() {
            return Ok(total);
        }
        Err(EnqueueError {
            queued: total - failed.len(),
            total,
            failed,
            source,
        })
    }
}

/// The three lanes' queues, each with its dead-letter queue, created with
/// the settings `template.yaml` declares: `name` (fast), `name-slow` and
/// `name-waiting`. Used by the local stack and the tests; answers the
/// queues' URLs and their dead-letter queues' URLs.
pub async fn create_delivery_queues(
    client: &Client,
    name: &str,
) -> Result<(LaneUrls, LaneUrls), Box<dyn std::error::Error + Send + Sync>> {
    let (fast, fast_dead) = create_queue_pair(client, name, MAX_RECEIVE_COUNT).await?;
    let (slow, slow_dead) =
        create_queue_pair(client, &format!("{name}-slow"), MAX_RECEIVE_COUNT).await?;
    let (waiting, waiting_dead) = create_queue_pair(
        client,
        &format!("{name}-waiting"),
        WAITING_MAX_RECEIVE_COUNT,
    )
    .await?;
    Ok((
        LaneUrls {
            fast,
            slow,
            waiting,
        },
        LaneUrls {
            fast: fast_dead,
            slow: slow_dead,
            waiting: waiting_dead,
        },
    ))
}

/// Receives before a waiting retry moves to its dead-letter queue: a wait
/// of 24 hours is received 3 times (after 15 minutes, then about every 12
/// hours), which leaves room for 7 faults.
pub const WAITING_MAX_RECEIVE_COUNT: u32 = 10;

/// One queue and its dead-letter queue; answers both URLs.
async fn create_queue_pair(
    client: &Client,
    name: &str,
    max_receive_count: u32,
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
        r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"{max_receive_count}"}}"#
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

/// The message group of a message sent to `lane`: the project in the slow
/// lane, where SQS then serves projects fairly (a project with a backlog of
/// dead deliveries does not hold up the others'); none elsewhere.
fn group_in(lane: Lane, group: &str) -> Option<&str> {
    (lane == Lane::Slow && !group.is_empty()).then_some(group)
}

impl DeliveryQueue for SqsQueue {
    async fn enqueue(
        &self,
        lane: Lane,
        group: &str,
        bodies: Vec<String>,
    ) -> Result<usize, EnqueueError> {
        self.enqueue_delayed(lane, group, bodies, &[]).await
    }

    async fn enqueue_paced(
        &self,
        lane: Lane,
        group: &str,
        bodies: Vec<(String, std::time::Duration)>,
    ) -> Result<usize, EnqueueError> {
        let (bodies, delays): (Vec<String>, Vec<i32>) = bodies
            .into_iter()
            .map(|(body, delay)| (body, whole_seconds(delay)))
            .unzip();
        self.enqueue_delayed(lane, group, bodies, &delays).await
    }

    async fn enqueue_one(
        &self,
        lane: Lane,
        group: &str,
        body: String,
        delay: std::time::Duration,
    ) -> Result<(), EnqueueError> {
        // Whole seconds, rounded up: a message is never visible early.
        let seconds = whole_seconds(delay).min(900);
        self.client
            .send_message()
            .queue_url(self.urls.url(lane))
            .message_body(body)
            .set_message_group_id(group_in(lane, group).map(str::to_owned))
            .delay_seconds(seconds)
            .send()
            .await
            .map(drop)
            .map_err(|e| EnqueueError::one(Some(Box::new(e))))
    }

    async fn postpone(
        &self,
        receipt: &str,
        delay: std::time::Duration,
    ) -> Result<(), EnqueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.urls.waiting)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(delay).min(43_199))
            .send()
            .await
            .map(drop)
            .map_err(|e| EnqueueError::one(Some(Box::new(e))))
    }
}

/// Whole seconds, rounded up, as SQS takes them.
fn whole_seconds(delay: std::time::Duration) -> i32 {
    let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(i32::MAX)
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

/// A dead-letter queue that takes what could not be handled, as received,
/// with the reason beside it (message attributes `reason` and
/// `error_code`), so nothing is dropped silently and an operator can send
/// it again once mended.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: Client,
    url: String,
}

impl DeadLetters {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Queues `body` with `reason` (at most 1,000 characters kept).
    pub async fn put(
        &self,
        body: &str,
        code: &str,
        reason: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use aws_sdk_sqs::types::MessageAttributeValue;
        let text = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
        };
        let reason: String = reason.chars().take(1000).collect();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("reason", text(&reason)?)
            .message_attributes("error_code", text(code)?)
            .send()
            .await?;
        Ok(())
    }
}
