//! From a queued message to the request: whether it is still to be sent,
//! and the POST itself (endpoint, headers, signatures, exact bytes).

use std::borrow::Cow;
use std::fmt;

use url::Url;

use crate::delivery::{DeliveryMessage, FailureReason, Trigger};
use crate::{EventName, SigningSecret, Timestamp, Webhook};

/// Why a queued delivery is acknowledged without a POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Deleted,
    Disabled,
    Unsubscribed,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Deleted => "skipped: webhook deleted",
            Skip::Disabled => "skipped: webhook disabled",
            Skip::Unsubscribed => "skipped: not subscribed",
        }
    }

    /// Why, as the delivery history says it.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Deleted => "webhook deleted",
            Skip::Disabled => "webhook disabled",
            Skip::Unsubscribed => "not subscribed",
        }
    }
}

/// Whether a queued message is still to be sent (a disabled or
/// deleted webhook receives nothing, even for messages already queued). A
/// redelivery or ping a person asked for goes to any webhook that exists; a
/// bulk recovery's deliveries to an enabled one, whatever it subscribes to
/// now (what it resends was found by the subscription of its time).
pub fn eligible(
    webhook: Option<&Webhook>,
    event: EventName,
    trigger: Trigger,
) -> Result<&Webhook, Skip> {
    let webhook = webhook.ok_or(Skip::Deleted)?;
    if matches!(trigger, Trigger::Redelivery | Trigger::Ping) {
        Ok(webhook)
    } else if !webhook.enabled {
        Err(Skip::Disabled)
    } else if trigger == Trigger::Recovery {
        // A recovery resends what the webhook was subscribed to when it was
        // published or missed; it asks for an enabled webhook.
        Ok(webhook)
    } else if !webhook.subscribes_to(event) {
        Err(Skip::Unsubscribed)
    } else {
        Ok(webhook)
    }
}

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("ProjectWebhooks/", env!("CARGO_PKG_VERSION"));
/// Carries the shared secret, when the webhook has one.
pub const SECRET_HEADER: &str = "X-Qase-Secret";
/// Unique per delivery, so receivers can de-duplicate.
pub const DELIVERY_ID_HEADER: &str = "X-Qase-Delivery-Id";
/// The event name, so receivers can route without parsing the body.
pub const EVENT_HEADER: &str = "X-Qase-Event";
/// Standard Webhooks: the event's id, the same for every attempt of it (a
/// receiver de-duplicates on it).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: the attempt's Unix seconds, signed with the body.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: `v1,<signature>`, one per signing secret in use,
/// space-separated.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// Marks a redelivery a person asked for.
pub const REDELIVERY_HEADER: &str = "X-Qase-Redelivery";

/// One request header of a dispatch.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// Borrowed for the service's own names; a custom header's is owned.
    pub name: Cow<'static, str>,
    /// Borrowed for the values that never change, so that sending them
    /// copies nothing.
    pub value: Cow<'static, str>,
    /// Kept out of logs and debug output (the webhook secret).
    pub sensitive: bool,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.sensitive { "***" } else { &*self.value };
        write!(f, "{}: {value}", self.name)
    }
}

/// One POST, fully prepared: where it goes, its headers, the exact bytes.
/// The HTTP adapter sends it as it is and adds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub endpoint: Url,
    pub headers: Vec<Header>,
    pub body: String,
}

impl Dispatch {
    /// A header's value, by name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &*h.value)
    }
}

/// Whether `value` can travel in an HTTP header as it is: visible ASCII,
/// spaces and tabs.
fn header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Builds the request for one eligible delivery (with the webhook's custom
/// headers, values marked sensitive), signed with `signing` (and
/// with the webhook's previous signing secret while a rotation overlaps) as
/// of `now`. The envelope is moved into the body, not copied. Refuses a
/// secret that cannot be a header value (validation admits none; a webhook
/// is never sent without its secret) and a signing secret that cannot sign.
pub fn prepare(
    webhook: &Webhook,
    signing: &SigningSecret,
    message: DeliveryMessage,
    now: Timestamp,
) -> Result<Dispatch, FailureReason> {
    let body = String::from(Box::<str>::from(message.envelope));
    let webhook_id = message.event_id.to_string();
    let timestamp = now.unix_seconds();
    let mut signatures = Vec::with_capacity(2);
    for secret in std::iter::once(signing).chain(webhook.previous_signing(signing, now)) {
        signatures.push(
            secret
                .sign(&webhook_id, timestamp, &body)
                .ok_or(FailureReason::BadSigningSecret)?,
        );
    }
    let mut headers = vec![
        Header {
            name: Cow::Borrowed("Content-Type"),
            value: Cow::Borrowed("application/json"),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed("User-Agent"),
            value: Cow::Borrowed(USER_AGENT),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed(DELIVERY_ID_HEADER),
            value: Cow::Owned(message.delivery_id.to_string()),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed(EVENT_HEADER),
            value: Cow::Borrowed(message.event_name.as_str()),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed(WEBHOOK_ID_HEADER),
            value: Cow::Owned(webhook_id),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed(WEBHOOK_TIMESTAMP_HEADER),
            value: Cow::Owned(timestamp.to_string()),
            sensitive: false,
        },
        Header {
            name: Cow::Borrowed(WEBHOOK_SIGNATURE_HEADER),
            value: Cow::Owned(signatures.join(" ")),
            sensitive: false,
        },
    ];
    if message.trigger.is_resend() {
        headers.push(Header {
            name: Cow::Borrowed(REDELIVERY_HEADER),
            value: Cow::Borrowed("true"),
            sensitive: false,
        });
    }
    if let Some(secret) = &webhook.secret {
        if !header_safe(secret.expose()) {
            return Err(FailureReason::UnsendableSecret);
        }
        headers.push(Header {
            name: Cow::Borrowed(SECRET_HEADER),
            value: Cow::Owned(secret.expose().to_owned()),
            sensitive: true,
        });
    }
    // The webhook's own headers, after the service's (whose names they
    // cannot take), values kept out of logs and the history.
    for (name, value) in webhook.headers.iter() {
        headers.push(Header {
            name: Cow::Owned(name.to_owned()),
            value: Cow::Owned(value.expose().to_owned()),
            sensitive: true,
        });
    }
    Ok(Dispatch {
        endpoint: webhook.endpoint.clone(),
        headers,
        body,
    })
}
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::delivery::test_support::{input, project, webhook};

    #[test]
    fn eligibility_skips_deleted_disabled_and_unsubscribed() {
        let mut hook = webhook();
        assert_eq!(
            eligible(None, EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Deleted
        );
        assert!(eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).is_ok());
        assert_eq!(
            eligible(Some(&hook), EventName::CaseCreated, Trigger::Event).unwrap_err(),
            Skip::Unsubscribed
        );
        hook.enabled = false;
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Disabled
        );
        hook.events = BTreeSet::new();
        assert_eq!(
            eligible(Some(&hook), EventName::RunCompleted, Trigger::Event).unwrap_err(),
            Skip::Disabled
        );
    }

    fn signing() -> SigningSecret {
        SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    }

    fn at(raw: &str) -> Timestamp {
        Timestamp::parse(raw).unwrap()
    }

    fn message_for(hook: &Webhook) -> DeliveryMessage {
        let event = input(r#"{"event_name":"run.completed","payload":{"id":1}}"#)
            .validate(project(), Timestamp::now())
            .unwrap();
        DeliveryMessage::new(&event, hook.id, event.envelope().unwrap())
    }

    #[test]
    fn a_dispatch_carries_the_envelope_and_the_qase_headers() {
        let hook = webhook();
        let message = message_for(&hook);
        let (id, envelope) = (message.delivery_id, message.envelope.get().to_owned());
        let dispatch = prepare(&hook, &signing(), message, Timestamp::now()).unwrap();
        assert_eq!(dispatch.endpoint, hook.endpoint);
        assert_eq!(dispatch.body, envelope);
        assert_eq!(dispatch.header("content-type"), Some("application/json"));
        assert_eq!(dispatch.header("User-Agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("ProjectWebhooks/"));
        assert_eq!(
            dispatch.header(DELIVERY_ID_HEADER),
            Some(id.to_string().as_str())
        );
        assert_eq!(dispatch.header(EVENT_HEADER), Some("run.completed"));
        assert_eq!(dispatch.header(SECRET_HEADER), None);
        assert_eq!(dispatch.headers.len(), 7);
    }

    #[test]
    fn a_dispatch_is_signed_over_the_exact_body_as_standard_webhooks_describes() {
        let hook = webhook();
        let message = message_for(&hook);
        let event_id = message.event_id.to_string();
        let now = at("2026-11-29T12:00:00Z");
        let dispatch = prepare(&hook, &signing(), message, now).unwrap();
        assert_eq!(dispatch.header(WEBHOOK_ID_HEADER), Some(event_id.as_str()));
        assert_eq!(
            dispatch.header(WEBHOOK_TIMESTAMP_HEADER),
            Some("1795953600")
        );
        let expected = signing()
            .sign(&event_id, 1795953600, &dispatch.body)
            .unwrap();
        assert_eq!(
            dispatch.header(WEBHOOK_SIGNATURE_HEADER),
            Some(expected.as_str())
        );
        assert!(expected.starts_with("v1,"));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one() {
        let mut hook = webhook();
        let new = SigningSecret::generate().unwrap();
        hook.previous_signing_secret = Some(signing());
        hook.previous_signing_until = Some(at("2026-11-30T12:00:00Z"));
        let sigs = |hook: &Webhook, now: &str| {
            let message = message_for(hook);
            let id = message.event_id.to_string();
            let d = prepare(hook, &new, message, at(now)).unwrap();
            let ts = d.header(WEBHOOK_TIMESTAMP_HEADER).unwrap().parse().unwrap();
            let expect = |s: &SigningSecret| s.sign(&id, ts, &d.body).unwrap();
            (
                d.header(WEBHOOK_SIGNATURE_HEADER).unwrap().to_owned(),
                expect(&new),
                expect(&signing()),
            )
        };
        let (during, new_sig, old_sig) = sigs(&hook, "2026-11-30T11:59:59Z");
        assert_eq!(during, format!("{new_sig} {old_sig}"));
        let (after, new_sig, _) = sigs(&hook, "2026-11-30T12:00:00Z");
        assert_eq!(after, new_sig, "the overlap has ended");
        // A previous secret equal to the current one signs once.
        hook.previous_signing_secret = Some(new.clone());
        let (same, new_sig, _) = sigs(&hook, "2026-11-29T00:00:00Z");
        assert_eq!(same, new_sig);
    }

    #[test]
    fn a_signing_secret_that_cannot_sign_sends_nothing() {
        let hook = webhook();
        let broken: SigningSecret = serde_json::from_str(r#""whsec_%%%""#).unwrap();
        assert_eq!(
            prepare(&hook, &broken, message_for(&hook), Timestamp::now()).unwrap_err(),
            FailureReason::BadSigningSecret
        );
        assert_eq!(
            FailureReason::BadSigningSecret.to_string(),
            "the signing secret cannot sign"
        );
    }

    #[test]
    fn the_secret_travels_as_a_sensitive_header_and_never_in_debug_output() {
        let mut hook = webhook();
        hook.secret = Some(crate::Secret::new("s3cret value".into()));
        let dispatch = prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).unwrap();
        assert_eq!(dispatch.header("x-qase-secret"), Some("s3cret value"));
        let secret = dispatch
            .headers
            .iter()
            .find(|h| h.name == SECRET_HEADER)
            .unwrap();
        assert!(secret.sensitive);
        assert!(dispatch.headers.iter().filter(|h| h.sensitive).count() == 1);
        let shown = format!("{dispatch:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("X-Qase-Secret: ***"), "{shown}");
    }

    #[test]
    fn a_secret_that_cannot_be_a_header_value_is_never_sent() {
        for bad in ["line\nbreak", "nul\0", "del\x7f", "é"] {
            let mut hook = webhook();
            hook.secret = Some(crate::Secret::new(bad.into()));
            assert_eq!(
                prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).unwrap_err(),
                FailureReason::UnsendableSecret,
                "{bad:?}"
            );
        }
        let mut hook = webhook();
        hook.secret = Some(crate::Secret::new("tab\tinside ~".into()));
        assert!(prepare(&hook, &signing(), message_for(&hook), Timestamp::now()).is_ok());
    }
}
