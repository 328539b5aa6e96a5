//! Lambda entry point: configuration, the DynamoDB client and the one HTTP
//! client are built once per cold start, then each SQS batch is handled
//! within the invocation's deadline.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use sender::{Sender, SenderConfig};
use shared::adapters::{DynamoStore, EventBus, HttpPoster, SqsQueue};
use shared::config::{Env, process_env};
use shared::ports::{DeliveryQueue, DeliveryStore, RecoveryProgress};
use shared::recovery::Recoverer;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let config = SenderConfig::from_env(&Env::new(&process_env))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let http = HttpPoster::new(config.addresses.clone(), config.deadline)?;
    let store = DynamoStore::from_sdk(&sdk, config.table_name);
    let events = EventBus::from_sdk(&sdk, config.event_bus.as_deref());
    let sender = Sender::new(store.clone(), http, config.concurrency)
        .with_rules(config.rules)
        .with_history(config.delivery_log)
        .with_events(events.clone());
    match config.lanes {
        Some(urls) => {
            let names = urls.names();
            let queue = SqsQueue::from_sdk(&sdk, urls);
            let recoveries =
                Recoverer::new(store, queue.clone(), config.delivery_log).with_events(events);
            let sender = sender
                .with_lanes(queue, names, config.retry_schedule)
                .with_recoveries(Arc::new(recoveries));
            serve(&sender).await
        }
        None => {
            tracing::warn!(
                "no queue URLs: deliveries stay in their queue and failed ones are not retried"
            );
            serve(&sender).await
        }
    }
}

/// Runs the Lambda loop: each SQS batch within the invocation's deadline.
async fn serve<S: DeliveryStore + RecoveryProgress, Q: DeliveryQueue>(
    sender: &Sender<S, Q>,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let ends = shared::deadline_instant(event.context.deadline, sender::FUNCTION_TIMEOUT);
        Ok::<_, lambda_runtime::Error>(sender.handle(event.payload, ends).await)
    }))
    .await
}
