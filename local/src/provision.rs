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

#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    /// The three lanes' queues.
    pub queue_urls: LaneUrls,
    /// Their dead-letter queues.
    pub dead_letter_urls: LaneUrls,
    pub admin_secret_arn: String,
}

/// Table and index, the lanes' queues and their dead-letter queues, the admin token
/// secret, and a verified SES sender.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    admin_token: &str,
    mail_from: &str,
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
    Ok(Resources {
        table,
        queue_urls,
        dead_letter_urls,
        admin_secret_arn,
    })
}
