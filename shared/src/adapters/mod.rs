//! The ports of [`crate::ports`] over AWS services.
//!
//! Clients come from one `aws_config::SdkConfig` loaded at cold start; the
//! endpoint, region and credentials come from the SDK's standard environment
//! variables only (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).

pub mod dynamo;
pub mod events;
pub mod http;
pub mod secrets;
pub mod ses;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use events::EventBus;
pub use http::HttpPoster;
pub use ses::SesMailer;
pub use sqs::SqsQueue;
