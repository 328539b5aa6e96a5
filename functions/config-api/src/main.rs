//! Lambda entry point: load configuration and clients once, then serve the
//! router through API Gateway (HTTP API) events.

use config_api::{ApiConfig, app};
use shared::config::{Env, process_env};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = ApiConfig::from_env(&Env::new(&process_env))?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let router = app(&sdk, config).await?;
    lambda_http::run(router).await
}
