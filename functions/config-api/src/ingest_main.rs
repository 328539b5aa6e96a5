//! Lambda entry point of the ingest function: publishes the events that
//! rules on the operator's EventBridge bus route to it (`ingest`).

use config_api::ingest::{Ingest, IngestConfig};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::value::RawValue;
use shared::adapters::sqs::DeadLetters;
use shared::adapters::{DynamoStore, SqsQueue};
use shared::config::{Env, process_env};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let config = IngestConfig::from_env(&Env::new(&process_env))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ingest = Ingest::new(
        DynamoStore::from_sdk(&sdk, config.table_name),
        SqsQueue::from_sdk(&sdk, config.queue_urls),
        config.delivery_log,
        config.publish_share,
        DeadLetters::new(aws_sdk_sqs::Client::new(&sdk), config.dead_letter_url),
    );
    let ingest = &ingest;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            Ok::<_, lambda_runtime::Error>(ingest.handle(event.payload.get()).await?)
        },
    ))
    .await
}
