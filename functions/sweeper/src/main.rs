//! Lambda entry point, run by an EventBridge schedule. The sweep's `now` is
//! the wall clock (the event's `time` is only logged); it stops taking new
//! work 10 seconds before the invocation's deadline. A sweep that left
//! e-mails unsent ends in an error, which the sweeper's alarm counts.

use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use shared::adapters::{DynamoStore, EventBus, SesMailer};
use shared::config::{Env, process_env};
use sweeper::{Sweeper, SweeperConfig};

/// Time kept in hand at the end of an invocation.
const MARGIN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let config = SweeperConfig::from_env(&Env::new(&process_env))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sweeper = Sweeper::new(
        DynamoStore::from_sdk(&sdk, config.table_name),
        SesMailer::from_sdk(&sdk),
        config.window,
        config.notice,
    )
    .with_daily_limit(config.notices_per_day)
    .with_history(config.delivery_log)
    .with_events(EventBus::from_sdk(&sdk, config.event_bus.as_deref()));
    let sweeper = &sweeper;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let report = sweeper
                .handle(&event.payload, stop_at(event.context.deadline))
                .await?;
            Ok::<_, lambda_runtime::Error>(report.into_result()?)
        },
    ))
    .await
}

/// The instant to stop taking work: the invocation's deadline less a margin.
fn stop_at(deadline_ms: u64) -> Instant {
    let deadline = shared::deadline_instant(deadline_ms, sweeper::FUNCTION_TIMEOUT);
    deadline.checked_sub(MARGIN).unwrap_or_else(Instant::now)
}
