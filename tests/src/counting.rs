//! Counts the AWS calls a client makes, by operation name, with an SDK
//! interceptor on an otherwise ordinary client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use shared::adapters::{DynamoStore, SqsQueue};

#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl CallCounter {
    /// Calls of one operation, e.g. `BatchGetItem`.
    pub fn get(&self, operation: &str) -> usize {
        self.0.lock().unwrap().get(operation).copied().unwrap_or(0)
    }

    pub fn all(&self) -> BTreeMap<String, usize> {
        self.0.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            *self
                .0
                .lock()
                .unwrap()
                .entry(metadata.name().to_owned())
                .or_default() += 1;
        }
        Ok(())
    }
}

/// A store over `table` whose DynamoDB calls are counted.
pub async fn counting_store(table: &str) -> (DynamoStore, CallCounter) {
    let counter = CallCounter::default();
    let sdk = crate::sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    (
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table),
        counter,
    )
}

/// A queue over `url` whose SQS calls are counted.
pub async fn counting_queue(url: &str) -> (SqsQueue, CallCounter) {
    let counter = CallCounter::default();
    let sdk = crate::sdk_config().await;
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    (
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), url),
        counter,
    )
}
