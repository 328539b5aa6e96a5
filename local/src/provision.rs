//! The AWS resources of `template.yaml`, created in the emulator from the same
//! definitions the code and the tests use.

use shared::adapters::DynamoStore;
use shared::adapters::sqs::{LaneUrls, create_delivery_queues};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The names `make dev` gives its resources; `local/sam-env.json` names the
/// same (a test compares them).
pub const TABLE: &str = "webhooks";
/// The fast lane's queue; the slow and waiting lanes' are `deliveries-slow`
/// and `deliveries-waiting`.
pub const QUEUE: &str = "deliveries";
pub const ADMIN_SECRET: &str = "webhooks-admin-token";
/// The verified SES sender of the local stack.
pub const MAIL_FROM: &str = "webhooks@example.com";
/// The bus the functions put operational events on unless `make dev` is
/// told another (`OPERATIONAL_EVENT_BUS`): the emulator's default bus, as
/// deployed by default (`OperationalEventBus`).
pub const EVENT_BUS: &str = "default";
/// The queue a rule on [`EVENT_BUS`] sends every operational event to, for
/// `make dev` to show them.
pub const OPERATIONAL_QUEUE: &str = "operational-events";
/// The queue the ingest function puts the events it refuses in.
pub const INGEST_DEAD_LETTERS: &str = "ingest-dead-letters";
/// That rule's name.
pub const OPERATIONAL_RULE: &str = "operational-events-to-queue";

#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    /// The three lanes' queues.
    pub queue_urls: LaneUrls,
    /// Their dead-letter queues.
    pub dead_letter_urls: LaneUrls,
    pub admin_secret_arn: String,
    /// The queue the rule on the event bus fills with operational events.
    pub operational_queue_url: String,
    /// The ingest function's dead-letter queue.
    pub ingest_dead_letter_url: String,
}

/// Table and index, the lanes' queues and their dead-letter queues, the admin token
/// secret, a verified SES sender, the rule on `event_bus` that shows the
/// operational events, and the ingest function's dead-letter queue.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    admin_token: &str,
    mail_from: &str,
    event_bus: &str,
) -> Result<Resources, BoxError> {
    let table = TABLE.to_owned();
    DynamoStore::from_sdk(sdk, &table).create_table().await?;
    let (queue_urls, dead_letter_urls) =
        create_delivery_queues(&aws_sdk_sqs::Client::new(sdk), QUEUE).await?;
    let admin_secret_arn = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(ADMIN_SECRET)
        .secret_string(admin_token)
        .send()
        .await?
        .arn
        .ok_or("no secret ARN")?;
    aws_sdk_sesv2::Client::new(sdk)
        .create_email_identity()
        .email_identity(mail_from)
        .send()
        .await?;
    let operational_queue_url =
        route_operational_events(sdk, event_bus, OPERATIONAL_RULE, OPERATIONAL_QUEUE).await?;
    let ingest_dead_letter_url = aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(INGEST_DEAD_LETTERS)
        .send()
        .await?
        .queue_url
        .ok_or("no queue URL")?;
    Ok(Resources {
        table,
        queue_urls,
        dead_letter_urls,
        admin_secret_arn,
        operational_queue_url,
        ingest_dead_letter_url,
    })
}

/// A queue named `queue`, and a rule on `bus` that sends it every
/// operational event (source `project-webhooks`), as an operator's rule
/// would; answers the queue's URL.
pub async fn route_operational_events(
    sdk: &aws_config::SdkConfig,
    bus: &str,
    rule: &str,
    queue: &str,
) -> Result<String, BoxError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .send()
        .await?
        .queue_url
        .ok_or("no queue URL")?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .ok_or("no queue ARN")?;
    let events = aws_sdk_eventbridge::Client::new(sdk);
    if bus != "default" {
        // A bus of its own (the default bus always exists).
        let _ = events.create_event_bus().name(bus).send().await;
    }
    let pattern = serde_json::json!({
        "source": [shared::domain::operational::SOURCE]
    });
    events
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await?;
    events
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()?,
        )
        .send()
        .await?;
    Ok(url)
}
