//! Sending a prepared [`Dispatch`] safely (`docs/ARCHITECTURE.md`, "Address
//! policy"): the request is built in the domain; this adapter only sends it
//! and classifies what came back.
//!
//! Host names are resolved by [`GuardedResolver`], which refuses the whole
//! name if any address it resolves to is refused by the policy; reqwest then
//! connects only to the addresses the resolver returned, so there is no second
//! lookup for an attacker to rebind. IP-literal hosts never reach a resolver,
//! so they are checked before the request is built.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use crate::domain::delivery::{Header, RESPONSE_BODY_CAP};
use crate::domain::{AddressPolicy, BlockedAddress, Dispatch, FailureReason, Outcome};

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

    /// Sends one prepared dispatch (its body moved into the request, not
    /// copied) and classifies what came of it.
    pub async fn send(&self, dispatch: Dispatch) -> Outcome {
        self.send_for_answer(dispatch).await.outcome
    }

    /// [`send`](Self::send), with the answer's `Retry-After` on a 429 or 503.
    pub async fn send_for_answer(&self, dispatch: Dispatch) -> Answer {
        if literal_ip(&dispatch.endpoint).is_some_and(|ip| self.policy.check(ip).is_err()) {
            return failed(FailureReason::BlockedAddress).into();
        }
        let Dispatch {
            endpoint,
            headers,
            body,
        } = dispatch;
        let Some(headers) = header_map(headers) else {
            // `prepare` admits only valid values; never send a partial request.
            return failed(FailureReason::UnsendableSecret).into();
        };
        let request = self.client.post(endpoint).headers(headers).body(body);
        // One deadline from connecting to the end of the (capped) body read.
        let response = match request.timeout(self.deadline).send().await {
            Err(err) => return failed(classify(&err, self.deadline)).into(),
            Ok(response) => response,
        };
        let status = response.status().as_u16();
        let outcome = Outcome::from_status(status);
        let retry_after = matches!(status, 429 | 503)
            .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read a little of the body, for the delivery history and so the
        // connection can be reused; a slow body cannot outlast the deadline.
        let body = read_capped(response).await;
        Answer {
            outcome,
            retry_after,
            body,
        }
    }
}

/// What an endpoint answered: the outcome, when a 429 or 503 asked to be
/// retried (`Retry-After`, as sent), and the first 1 KiB of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            retry_after: None,
            body: Vec::new(),
        }
    }
}

/// The dispatch's headers for reqwest; sensitive ones are marked so.
fn header_map(headers: Vec<Header>) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let mut value = match header.value {
            Cow::Borrowed(fixed) => HeaderValue::from_str(fixed).ok()?,
            Cow::Owned(owned) => HeaderValue::try_from(owned).ok()?,
        };
        value.set_sensitive(header.sensitive);
        map.append(name, value);
    }
    Some(map)
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

/// The body up to [`RESPONSE_BODY_CAP`] bytes; the rest is not read. A
/// body that breaks off keeps what arrived.
async fn read_capped(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = RESPONSE_BODY_CAP - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= RESPONSE_BODY_CAP {
            break;
        }
    }
    body
}

/// Names the cause of a failed request from its error chain. An
/// `io::Error` that wraps another error (rustls' certificate errors arrive
/// so) hides it from `source()`; the walk looks inside it.
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
        source = cause.source();
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return FailureReason::ConnectionRefused;
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return FailureReason::Timeout(deadline);
            }
            if let Some(inner) = io.get_ref() {
                source = Some(inner);
            }
        }
    }
    if err.is_timeout() {
        FailureReason::Timeout(deadline)
    } else {
        FailureReason::Connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::{SECRET_HEADER, prepare};
    use crate::domain::{
        DeliveryMessage, ProjectCode, PublishInput, Secret, Timestamp, WebhookId, WebhookInput,
    };

    #[test]
    fn every_prepared_header_goes_on_the_wire_and_the_secret_stays_sensitive() {
        let project = ProjectCode::parse("P").unwrap();
        let mut hook = WebhookInput {
            title: Some("t".into()),
            endpoint: Some("https://example.com/".into()),
            events: Some(vec!["run.completed".into()]),
            ..WebhookInput::default()
        }
        .validate(&Default::default())
        .unwrap()
        .into_webhook(WebhookId::generate(), project.clone(), Timestamp::now());
        hook.secret = Some(Secret::new("s3cret".into()));
        let event =
            serde_json::from_str::<PublishInput>(r#"{"event_name":"run.completed","payload":{}}"#)
                .unwrap()
                .validate(project, Timestamp::now())
                .unwrap();
        let message = DeliveryMessage::new(&event, hook.id, event.envelope().unwrap());
        let signing = crate::domain::SigningSecret::generate().unwrap();
        let dispatch = prepare(&hook, &signing, message, Timestamp::now()).unwrap();
        let names: Vec<String> = dispatch
            .headers
            .iter()
            .map(|h| h.name.to_string())
            .collect();
        let map = header_map(dispatch.headers).unwrap();
        assert_eq!(map.len(), names.len());
        for name in names {
            assert!(map.contains_key(name.as_str()), "{name}");
        }
        assert!(map[SECRET_HEADER].is_sensitive());
        assert!(!map["content-type"].is_sensitive());
    }
}
