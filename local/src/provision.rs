//! The AWS resources of `template.yaml`, created in the emulator from the same
//! definitions the code and the tests use.

use shared::adapters::DynamoStore;
use shared::adapters::sqs::create_delivery_queues;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The names `make dev` gives its resources; `local/sam-env.json` names the
/// same (a test compares them).
pub const TABLE: &str = "webhooks";
pub const QUEUE: &str = "deliveries";
pub const ADMIN_SECRET: &str = "webhooks-admin-token";
/// The verified SES sender of the local stack.
pub const MAIL_FROM: &str = "webhooks@example.com";

#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub admin_secret_arn: String,
}

/// Table and index, delivery queue and dead-letter queue, the admin token
/// secret, and a verified SES sender.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    admin_token: &str,
    mail_from: &str,
) -> Result<Resources, BoxError> {
    let table = TABLE.to_owned();
    DynamoStore::from_sdk(sdk, &table).create_table().await?;
    let (queue_url, dead_letter_queue_url) =
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
        queue_url,
        dead_letter_queue_url,
        admin_secret_arn,
    })
}
