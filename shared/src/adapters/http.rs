//! POSTing envelopes to endpoints, safely (PRODUCT.md sections 5 to 7).
//!
//! Host names are resolved by [`GuardedResolver`], which refuses the whole
//! name if any address it resolves to is refused by the policy; reqwest then
//! connects only to the addresses the resolver returned, so there is no second
//! lookup for an attacker to rebind. IP-literal hosts never reach a resolver,
//! so they are checked before the request is built.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::value::RawValue;
use url::{Host, Url};
use uuid::Uuid;

use crate::domain::delivery::RESPONSE_BODY_CAP;
use crate::domain::{AddressPolicy, BlockedAddress, EventName, FailureReason, Outcome, Secret};

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("ProjectWebhooks/", env!("CARGO_PKG_VERSION"));
/// Carries the shared secret, when the webhook has one.
pub const SECRET_HEADER: &str = "X-Qase-Secret";
/// Unique per delivery, so receivers can de-duplicate.
pub const DELIVERY_ID_HEADER: &str = "X-Qase-Delivery-Id";
/// The event name, so receivers can route without parsing the body.
pub const EVENT_HEADER: &str = "X-Qase-Event";

/// A host name resolved to nothing.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed")]
pub struct DnsError(#[source] Option<std::io::Error>);

/// Resolves with the system resolver and refuses names with any address the
/// policy refuses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| Box::new(DnsError(Some(e))) as Box<dyn StdError + Send + Sync>)?
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(DnsError(None)) as Box<dyn StdError + Send + Sync>);
            }
            for addr in &addrs {
                policy
                    .check(addr.ip())
                    .map_err(|blocked| Box::new(blocked) as Box<dyn StdError + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The one HTTP client of a sender, built at cold start and reused.
#[derive(Debug, Clone)]
pub struct HttpPoster {
    client: reqwest::Client,
    policy: AddressPolicy,
    deadline: Duration,
}

impl HttpPoster {
    pub fn new(policy: AddressPolicy, deadline: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .connect_timeout(deadline)
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            client,
            policy,
            deadline,
        })
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// POSTs `envelope` (moved into the request, not copied) for one
    /// delivery and classifies what came of it.
    pub async fn post(
        &self,
        endpoint: &Url,
        delivery_id: Uuid,
        event_name: EventName,
        envelope: Box<RawValue>,
        secret: Option<&Secret>,
    ) -> Outcome {
        if literal_ip(endpoint).is_some_and(|ip| self.policy.check(ip).is_err()) {
            return failed(FailureReason::BlockedAddress);
        }
        let mut request = self
            .client
            .post(endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(DELIVERY_ID_HEADER, delivery_id.to_string())
            .header(EVENT_HEADER, event_name.as_str())
            .body(String::from(Box::<str>::from(envelope)));
        if let Some(secret) = secret {
            match HeaderValue::from_str(secret.expose()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(SECRET_HEADER, value);
                }
                // Validation admits only printable ASCII; never send without it.
                Err(_) => return failed(FailureReason::Connection),
            }
        }
        // One deadline from connecting to the end of the (capped) body read.
        let response = match request.timeout(self.deadline).send().await {
            Err(err) => return failed(classify(&err, self.deadline)),
            Ok(response) => response,
        };
        let outcome = Outcome::from_status(response.status().as_u16());
        // Read a little of the body so the connection can be reused; what it
        // says does not matter, and a slow body cannot outlast the deadline.
        drain(response).await;
        outcome
    }
}

fn failed(reason: FailureReason) -> Outcome {
    Outcome::Failed { reason }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read >= RESPONSE_BODY_CAP {
            break;
        }
    }
}

/// Names the cause of a failed request from its error chain.
fn classify(err: &reqwest::Error, deadline: Duration) -> FailureReason {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<BlockedAddress>() {
            return FailureReason::BlockedAddress;
        }
        if cause.is::<DnsError>() {
            return FailureReason::Dns;
        }
        if cause.is::<rustls::Error>() {
            return FailureReason::Tls;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return FailureReason::ConnectionRefused;
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return FailureReason::Timeout(deadline);
            }
        }
        source = cause.source();
    }
    if err.is_timeout() {
        FailureReason::Timeout(deadline)
    } else {
        FailureReason::Connection
    }
}
