//! Counts the AWS calls a client makes, by operation name, with an SDK
//! interceptor on an otherwise ordinary client; and [`Interleave`], which puts
//! another writer's step between two calls of the code under test.

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

/// Queues over `urls` whose SQS calls are counted.
pub async fn counting_queue(urls: &shared::adapters::sqs::LaneUrls) -> (SqsQueue, CallCounter) {
    let counter = CallCounter::default();
    let sdk = crate::sdk_config().await;
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .build();
    (
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), urls.clone()),
        counter,
    )
}

/// A hook run just before each call of one operation, with the call's
/// 1-based number, on its own thread while the call waits: a way to put
/// another writer's step exactly between two steps of the code under test.
#[derive(Clone)]
pub struct Interleave {
    operation: &'static str,
    calls: Arc<Mutex<usize>>,
    hook: Arc<dyn Fn(usize) + Send + Sync>,
}

impl std::fmt::Debug for Interleave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleave")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

impl Intercept for Interleave {
    fn name(&self) -> &'static str {
        "Interleave"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == self.operation)
        {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            let hook = self.hook.clone();
            std::thread::spawn(move || hook(call))
                .join()
                .map_err(|_| "the interleaved step panicked")?;
        }
        Ok(())
    }
}

/// A store over `table` that runs `hook(n)` before its n-th `operation` call.
/// The hook runs outside the caller's runtime; [`block_on`] runs async steps.
pub async fn interleaved_store(
    table: &str,
    operation: &'static str,
    hook: impl Fn(usize) + Send + Sync + 'static,
) -> DynamoStore {
    let sdk = crate::sdk_config().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(Interleave {
            operation,
            calls: Arc::default(),
            hook: Arc::new(hook),
        })
        .build();
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table)
}

/// Runs a future to completion on a runtime of its own (inside a hook).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Refuses every call of one operation while switched on, as a service
/// that is down would: the call fails before it is sent, and the number of
/// refused calls is counted.
#[derive(Debug, Clone, Default)]
pub struct Refuse {
    operation: &'static str,
    on: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl Refuse {
    pub fn new(operation: &'static str) -> Self {
        let refuse = Self {
            operation,
            ..Self::default()
        };
        refuse.set(true);
        refuse
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Intercept for Refuse {
    fn name(&self) -> &'static str {
        "Refuse"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let named = cfg
            .load::<Metadata>()
            .is_some_and(|m| m.name() == self.operation);
        if named && self.on.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(format!("{} refused by the test", self.operation).into());
        }
        Ok(())
    }
}

/// Queues over `urls` that refuse `refuse`'s operation while it is on and
/// count every call.
pub async fn refusing_queue(
    urls: &shared::adapters::sqs::LaneUrls,
    refuse: Refuse,
) -> (SqsQueue, CallCounter) {
    let counter = CallCounter::default();
    let sdk = crate::sdk_config().await;
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .interceptor(counter.clone())
        .interceptor(refuse)
        .build();
    (
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), urls.clone()),
        counter,
    )
}
