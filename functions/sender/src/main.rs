//! Lambda entry point: configuration, the DynamoDB client and the one HTTP
//! client are built once per cold start, then each SQS batch is handled
//! within the invocation's deadline.

use lambda_runtime::{LambdaEvent, service_fn};
use sender::{Sender, SenderConfig};
use shared::adapters::{DynamoStore, HttpPoster};
use shared::config::{Env, process_env};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = SenderConfig::from_env(&Env::new(&process_env))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let http = HttpPoster::new(config.addresses.clone(), config.deadline)?;
    let sender = Sender::new(
        DynamoStore::from_sdk(&sdk, config.table_name),
        http,
        config.concurrency,
    )
    .disable_on_timeout(config.disable_on_timeout);
    let sender = &sender;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let ends = shared::deadline_instant(event.context.deadline, sender::FUNCTION_TIMEOUT);
        Ok::<_, lambda_runtime::Error>(sender.handle(event.payload, ends).await)
    }))
    .await
}
