//! Webhooks (`docs/ARCHITECTURE.md`, "Webhooks"): the stored shape, the derived status, and
//! the validation of every field a client may send.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize};
use url::{Host, Url};
use uuid::Uuid;

use super::validation::not_null;
use super::{
    AddressPolicy, CustomHeaders, EventName, FieldError, ProjectCode, RetryPolicy, Secret,
    SigningSecret, Timestamp,
};

/// A project holds at most this many webhooks.
pub const MAX_WEBHOOKS_PER_PROJECT: u32 = 100;
pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_ENDPOINT_LEN: usize = 2048;
pub const MAX_SECRET_CHARS: usize = 255;
pub const MAX_NOTIFY_EMAILS: usize = 10;
pub const MAX_EMAIL_LEN: usize = 254;

/// A webhook's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(Uuid);

impl WebhookId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Accepts the hyphenated lower-case form this service hands out.
    pub fn parse(raw: &str) -> Option<Self> {
        let id = Uuid::try_parse(raw).ok()?;
        (id.hyphenated().to_string() == raw).then_some(Self(id))
    }

    /// Accepts any hyphenated UUID, upper or lower case (JSON Schema's
    /// `uuid` format), as the id it names.
    pub fn parse_any_case(raw: &str) -> Option<Self> {
        let id = Uuid::try_parse(raw).ok()?;
        id.hyphenated()
            .to_string()
            .eq_ignore_ascii_case(raw)
            .then_some(Self(id))
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What the API shows as `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Failing,
    Disabled,
}

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub project: ProjectCode,
    pub title: String,
    pub endpoint: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Sent on every delivery; the values are write-only.
    #[serde(default, skip_serializing_if = "CustomHeaders::is_empty")]
    pub headers: CustomHeaders,
    pub events: BTreeSet<EventName>,
    pub enabled: bool,
    #[serde(default)]
    pub notify_emails: Vec<String>,
    /// `none` (one attempt, as Qase) or `standard` (retried on a schedule).
    #[serde(default)]
    pub retry_policy: RetryPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// First failure since the last success; `None` while healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_reason: Option<String>,
    /// Failures since the last success.
    #[serde(default)]
    pub failure_count: u64,
    /// Since when its deliveries have been slow (a delivery took
    /// [`crate::lane::SLOW_AFTER`] or more); `None` while they are quick.
    /// With `failing_since`, it puts the webhook in the slow lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The last span it was disabled, set when it is re-enabled: the events
    /// published then are what it missed (`crate::recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_disabled_from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_disabled_until: Option<Timestamp>,
    /// Signs every delivery. `None` only on a webhook stored before
    /// deliveries were signed: it gets one at its first delivery or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<SigningSecret>,
    /// The signing secret before the last rotation, which still signs
    /// deliveries (beside the new one) until `previous_signing_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_secret: Option<SigningSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_signing_until: Option<Timestamp>,
}

impl Webhook {
    /// The last span it was disabled, once it was re-enabled.
    pub fn last_disabled(&self) -> Option<crate::recover::Window> {
        Some(crate::recover::Window {
            from: self.last_disabled_from?,
            to: self.last_disabled_until?,
        })
    }

    /// The previous signing secret while it still signs at `now`, unless it
    /// is `current` itself.
    pub fn previous_signing(
        &self,
        current: &SigningSecret,
        now: Timestamp,
    ) -> Option<&SigningSecret> {
        let until = self.previous_signing_until?;
        self.previous_signing_secret
            .as_ref()
            .filter(|previous| now < until && *previous != current)
    }

    pub fn status(&self) -> Status {
        if !self.enabled {
            Status::Disabled
        } else if self.failing_since.is_some() {
            Status::Failing
        } else {
            Status::Active
        }
    }

    pub fn subscribes_to(&self, event: EventName) -> bool {
        self.events.contains(&event)
    }
}

/// Which endpoints the operator accepts: `http://` or only `https://`, and
/// which addresses (the address policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRules {
    pub allow_http: bool,
    pub addresses: AddressPolicy,
}

/// The body of a create request, as sent. Every field is checked by
/// [`WebhookInput::validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    #[serde(default, deserialize_with = "not_null")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "not_null")]
    pub notify_emails: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub retry_policy: Option<String>,
}

/// A create request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub title: String,
    pub endpoint: Url,
    pub secret: Option<Secret>,
    pub headers: CustomHeaders,
    pub events: BTreeSet<EventName>,
    pub enabled: bool,
    pub notify_emails: Vec<String>,
    pub retry_policy: RetryPolicy,
}

impl WebhookInput {
    pub fn validate(self, rules: &EndpointRules) -> Result<NewWebhook, FieldError> {
        let title = validate_title(&required(self.title, "title")?)?;
        let endpoint = validate_endpoint(&required(self.endpoint, "endpoint")?, rules)?;
        let secret = self.secret.map(|s| validate_secret(&s)).transpose()?;
        let headers = CustomHeaders::validate(self.headers.unwrap_or_default())?;
        let events = validate_events(&required(self.events, "events")?)?;
        let notify_emails = validate_notify_emails(&self.notify_emails.unwrap_or_default())?;
        Ok(NewWebhook {
            title,
            endpoint,
            secret,
            headers,
            events,
            enabled: self.enabled.unwrap_or(true),
            notify_emails,
            retry_policy: self
                .retry_policy
                .map(|p| validate_retry_policy(&p))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

impl NewWebhook {
    pub fn into_webhook(self, id: WebhookId, project: ProjectCode, now: Timestamp) -> Webhook {
        Webhook {
            id,
            project,
            title: self.title,
            endpoint: self.endpoint,
            secret: self.secret,
            headers: self.headers,
            events: self.events,
            enabled: self.enabled,
            notify_emails: self.notify_emails,
            retry_policy: self.retry_policy,
            created_at: now,
            updated_at: now,
            failing_since: None,
            last_failure_at: None,
            last_failure_reason: None,
            failure_count: 0,
            slow_since: None,
            disabled_at: None,
            disabled_reason: None,
            last_disabled_from: None,
            last_disabled_until: None,
            signing_secret: None,
            previous_signing_secret: None,
            previous_signing_until: None,
        }
    }
}

/// The body of a PATCH, as sent: absent fields stay as they are;
/// `"secret": null` removes the secret.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default, deserialize_with = "not_null")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub secret: Option<Option<String>>,
    /// The whole set of custom headers: it replaces the stored one (`{}`
    /// removes them all).
    #[serde(default, deserialize_with = "not_null")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "not_null")]
    pub notify_emails: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub retry_policy: Option<String>,
}

/// A PATCH that passed validation: `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookChanges {
    pub title: Option<String>,
    pub endpoint: Option<Url>,
    /// `Some(None)` removes the secret.
    pub secret: Option<Option<Secret>>,
    pub headers: Option<CustomHeaders>,
    pub events: Option<BTreeSet<EventName>>,
    pub enabled: Option<bool>,
    pub notify_emails: Option<Vec<String>>,
    pub retry_policy: Option<RetryPolicy>,
}

impl WebhookPatch {
    pub fn validate(self, rules: &EndpointRules) -> Result<WebhookChanges, FieldError> {
        let changes = WebhookChanges {
            title: self.title.map(|t| validate_title(&t)).transpose()?,
            endpoint: self
                .endpoint
                .map(|e| validate_endpoint(&e, rules))
                .transpose()?,
            secret: self
                .secret
                .map(|s| s.map(|s| validate_secret(&s)).transpose())
                .transpose()?,
            headers: self.headers.map(CustomHeaders::validate).transpose()?,
            events: self.events.map(|e| validate_events(&e)).transpose()?,
            enabled: self.enabled,
            notify_emails: self
                .notify_emails
                .map(|e| validate_notify_emails(&e))
                .transpose()?,
            retry_policy: self
                .retry_policy
                .map(|p| validate_retry_policy(&p))
                .transpose()?,
        };
        if changes == WebhookChanges::default() {
            return Err(FieldError::new("body", "names no field to change"));
        }
        Ok(changes)
    }
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, FieldError> {
    value.ok_or_else(|| FieldError::new(field, "is required"))
}

/// `retry_policy`: `"none"` or `"standard"`.
pub fn validate_retry_policy(raw: &str) -> Result<RetryPolicy, FieldError> {
    RetryPolicy::parse(raw)
        .ok_or_else(|| FieldError::new("retry_policy", "must be \"none\" or \"standard\""))
}

pub fn validate_title(raw: &str) -> Result<String, FieldError> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(FieldError::new("title", "must not be blank"));
    }
    // Counted as sent, spaces around included, as the API's description says.
    if raw.chars().count() > MAX_TITLE_CHARS {
        return Err(FieldError::new(
            "title",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    if title.chars().any(char::is_control) {
        return Err(FieldError::new(
            "title",
            "must not contain control characters",
        ));
    }
    Ok(title.to_owned())
}

pub fn validate_endpoint(raw: &str, rules: &EndpointRules) -> Result<Url, FieldError> {
    let fail = |message: String| FieldError::new("endpoint", message);
    if raw.len() > MAX_ENDPOINT_LEN {
        return Err(fail(format!(
            "must be at most {MAX_ENDPOINT_LEN} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|e| fail(format!("must be an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if rules.allow_http => {}
        "http" => return Err(fail("must use https".into())),
        _ => return Err(fail("must be an https:// URL".into())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail("must not contain user info (user:password@)".into()));
    }
    if url.fragment().is_some() {
        return Err(fail("must not contain a fragment (#...)".into()));
    }
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(Host::Domain(name)) if names_loopback(name) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(Host::Domain(_)) => None,
        None => return Err(fail("must name a host".into())),
    };
    if let Some(ip) = ip {
        rules.addresses.check(ip).map_err(|blocked| {
            fail(format!(
                "must be publicly routable; {} is a {} address",
                blocked.ip,
                blocked.class.describe()
            ))
        })?;
    }
    Ok(url)
}

/// Whether a host name always means this machine: `localhost` and its
/// subdomains (RFC 6761), however spelled (any case, a trailing dot), and the
/// loopback names hosts files carry.
fn names_loopback(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || matches!(
            name.as_str(),
            "localhost.localdomain" | "ip6-localhost" | "ip6-loopback"
        )
}

pub fn validate_secret(raw: &str) -> Result<Secret, FieldError> {
    let len = raw.chars().count();
    if len == 0 || len > MAX_SECRET_CHARS {
        return Err(FieldError::new(
            "secret",
            format!("must be 1 to {MAX_SECRET_CHARS} characters (send null to remove it)"),
        ));
    }
    if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(FieldError::new(
            "secret",
            "must contain only printable ASCII characters (it is sent as an HTTP header)",
        ));
    }
    if raw.trim() != raw {
        return Err(FieldError::new(
            "secret",
            "must not start or end with a space: receivers strip spaces around header \
             values, so such a secret could never match",
        ));
    }
    Ok(Secret::new(raw.to_owned()))
}

pub fn validate_events(raw: &[String]) -> Result<BTreeSet<EventName>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new("events", "must name at least one event"));
    }
    raw.iter()
        .map(|name| {
            name.parse::<EventName>().map_err(|_| {
                FieldError::new(
                    "events",
                    format!("unknown event name {name:?}; GET /event-types lists them"),
                )
            })
        })
        .collect()
}

pub fn validate_notify_emails(raw: &[String]) -> Result<Vec<String>, FieldError> {
    if raw.len() > MAX_NOTIFY_EMAILS {
        return Err(FieldError::new(
            "notify_emails",
            format!("must hold at most {MAX_NOTIFY_EMAILS} addresses"),
        ));
    }
    let mut emails: Vec<String> = Vec::with_capacity(raw.len());
    for (i, address) in raw.iter().enumerate() {
        let address = sendable_email(address.trim())
            .map_err(|message| FieldError::new(format!("notify_emails[{i}]"), message))?;
        if !emails.iter().any(|e| e.eq_ignore_ascii_case(&address)) {
            emails.push(address);
        }
    }
    Ok(emails)
}

/// The address as the mail service can send to it: the local part must be
/// 7-bit ASCII (SES cannot deliver to internationalized mailbox names); an
/// internationalized domain is converted to its ASCII (punycode) form.
fn sendable_email(address: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "must be an e-mail address like owner@example.com";
    if !is_plausible_email(address) {
        return Err(SHAPE);
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(SHAPE);
    };
    if !local.is_ascii() {
        return Err(
            "must have an ASCII name before the @: the mail service cannot deliver to \
             internationalized mailbox names",
        );
    }
    let domain = idna::domain_to_ascii(domain)
        .map_err(|_| "must have a valid domain after the @ (an internationalized domain must convert to punycode)")?;
    let address = format!("{local}@{domain}");
    // The ASCII form may be longer than what was sent: checked again.
    if !is_plausible_email(&address) {
        return Err(SHAPE);
    }
    Ok(address)
}

/// A deliberately small check: one `@`, a non-empty local part, a dotted
/// domain, nothing that would split or inject a mail header.
fn is_plausible_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= MAX_EMAIL_LEN
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !domain.contains('@')
        && address
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>,;:\"()[]\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EndpointRules {
        EndpointRules::default()
    }

    fn input() -> WebhookInput {
        WebhookInput {
            title: Some("Slack notifier".into()),
            endpoint: Some("https://hooks.example.com/qase".into()),
            secret: Some("s3cret".into()),
            headers: None,
            events: Some(vec!["run.completed".into(), "defect.created".into()]),
            enabled: None,
            notify_emails: Some(vec!["owner@example.com".into()]),
            retry_policy: None,
        }
    }

    #[test]
    fn the_retry_policy_is_none_unless_standard_is_asked_for() {
        assert_eq!(
            input().validate(&rules()).unwrap().retry_policy,
            RetryPolicy::None
        );
        let mut standard = input();
        standard.retry_policy = Some("standard".into());
        assert_eq!(
            standard.validate(&rules()).unwrap().retry_policy,
            RetryPolicy::Standard
        );
        let mut bad = input();
        bad.retry_policy = Some("always".into());
        assert_eq!(bad.validate(&rules()).unwrap_err().field, "retry_policy");
        let patch: WebhookPatch = serde_json::from_str(r#"{"retry_policy": "none"}"#).unwrap();
        assert_eq!(
            patch.validate(&rules()).unwrap().retry_policy,
            Some(RetryPolicy::None)
        );
        let patch: WebhookPatch = serde_json::from_str(r#"{"retry_policy": "daily"}"#).unwrap();
        assert_eq!(patch.validate(&rules()).unwrap_err().field, "retry_policy");
        assert!(serde_json::from_str::<WebhookPatch>(r#"{"retry_policy": null}"#).is_err());
    }

    fn endpoint_error(raw: &str, rules: &EndpointRules) -> String {
        let err = validate_endpoint(raw, rules).unwrap_err();
        assert_eq!(err.field, "endpoint");
        err.message
    }

    #[test]
    fn a_full_input_validates_with_defaults() {
        let new = input().validate(&rules()).unwrap();
        assert_eq!(new.title, "Slack notifier");
        assert!(new.enabled);
        assert_eq!(new.events.len(), 2);
        assert_eq!(new.secret.as_ref().map(Secret::expose), Some("s3cret"));
        let hook = new.into_webhook(
            WebhookId::generate(),
            ProjectCode::parse("DEMO").unwrap(),
            Timestamp::now(),
        );
        assert_eq!(hook.status(), Status::Active);
        assert!(hook.subscribes_to(EventName::RunCompleted));
        assert!(!hook.subscribes_to(EventName::CaseCreated));
    }

    #[test]
    fn missing_required_fields_name_the_field() {
        for (field, strip) in [
            (
                "title",
                (|i: &mut WebhookInput| i.title = None) as fn(&mut WebhookInput),
            ),
            ("endpoint", |i| i.endpoint = None),
            ("events", |i| i.events = None),
        ] {
            let mut raw = input();
            strip(&mut raw);
            let err = raw.validate(&rules()).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.message.as_str()),
                (field, "is required")
            );
        }
    }

    #[test]
    fn title_rules() {
        assert_eq!(validate_title("  ok  ").unwrap(), "ok");
        assert!(validate_title(&"é".repeat(255)).is_ok());
        for bad in ["", "   ", &"x".repeat(256), "line\nbreak"] {
            assert_eq!(validate_title(bad).unwrap_err().field, "title");
        }
    }

    #[test]
    fn endpoint_must_be_absolute_https_without_user_info() {
        assert!(validate_endpoint("https://example.com/hook?x=1", &rules()).is_ok());
        assert!(endpoint_error("example.com/hook", &rules()).contains("absolute URL"));
        assert!(endpoint_error("/relative", &rules()).contains("absolute URL"));
        assert_eq!(
            endpoint_error("http://example.com", &rules()),
            "must use https"
        );
        assert!(endpoint_error("ftp://example.com", &rules()).contains("https://"));
        assert!(endpoint_error("https://user:pw@example.com", &rules()).contains("user info"));
        assert!(endpoint_error("https://user@example.com", &rules()).contains("user info"));
        assert!(endpoint_error("https://example.com/#frag", &rules()).contains("fragment"));
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(endpoint_error(&long, &rules()).contains("2048"));
        let http_ok = EndpointRules {
            allow_http: true,
            ..rules()
        };
        assert!(validate_endpoint("http://example.com", &http_ok).is_ok());
    }

    #[test]
    fn endpoint_ip_literals_of_every_refused_class_are_rejected() {
        for url in [
            "https://127.0.0.1/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.0.1/",
            "https://100.64.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://localhost/",
            "https://api.localhost:8443/",
        ] {
            let message = endpoint_error(url, &rules());
            assert!(
                message.starts_with("must be publicly routable"),
                "{url}: {message}"
            );
        }
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_before_the_check() {
        // WHATWG URL parsing reads these as 127.0.0.1 / 10.0.0.1.
        for url in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://012.0.0.1/",
        ] {
            let rules = EndpointRules {
                allow_http: true,
                ..rules()
            };
            let message = endpoint_error(url, &rules);
            assert!(
                message.contains("loopback") || message.contains("private"),
                "{url}: {message}"
            );
        }
    }

    #[test]
    fn allow_list_admits_loopback_endpoints() {
        let local = EndpointRules {
            allow_http: true,
            addresses: AddressPolicy::with_allow_list(vec!["127.0.0.0/8".parse().unwrap()]),
        };
        assert!(validate_endpoint("http://127.0.0.1:3001/hook", &local).is_ok());
        assert!(validate_endpoint("http://localhost:3001/hook", &local).is_ok());
        assert!(validate_endpoint("http://10.0.0.1/", &local).is_err());
    }

    #[test]
    fn secret_rules() {
        assert!(validate_secret(&"a".repeat(255)).is_ok());
        for bad in ["", &"a".repeat(256), "line\r\nX-Injected: 1", "naïve"] {
            assert_eq!(validate_secret(bad).unwrap_err().field, "secret");
        }
    }

    #[test]
    fn events_must_be_a_nonempty_set_of_catalog_names() {
        let set = validate_events(&["run.completed".into(), "run.completed".into()]).unwrap();
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![EventName::RunCompleted]
        );
        assert_eq!(validate_events(&[]).unwrap_err().field, "events");
        let err = validate_events(&["run.completed".into(), "run.exploded".into()]).unwrap_err();
        assert!(err.message.contains("\"run.exploded\""));
    }

    #[test]
    fn notify_email_rules() {
        let ok = validate_notify_emails(&[
            "a@example.com".into(),
            " A@example.com ".into(),
            "b.c+tag@sub.example.org".into(),
        ])
        .unwrap();
        assert_eq!(ok, vec!["a@example.com", "b.c+tag@sub.example.org"]);
        for (i, bad) in [
            "plain",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b.com\nBcc: x@y.z",
            "<a@b.com>",
        ]
        .iter()
        .enumerate()
        {
            let err =
                validate_notify_emails(&["ok@example.com".into(), bad.to_string()]).unwrap_err();
            assert_eq!(err.field, "notify_emails[1]", "case {i}: {bad:?}");
        }
        let many: Vec<String> = (0..11).map(|i| format!("u{i}@example.com")).collect();
        assert_eq!(
            validate_notify_emails(&many).unwrap_err().field,
            "notify_emails"
        );
    }

    #[test]
    fn notify_emails_are_addresses_the_mail_service_can_send_to() {
        let converted = validate_notify_emails(&["jose@exämple.com".into()]).unwrap();
        assert_eq!(
            converted,
            vec!["jose@xn--exmple-cua.com"],
            "the domain in punycode"
        );
        let err = validate_notify_emails(&["josé@example.com".into()]).unwrap_err();
        assert_eq!(err.field, "notify_emails[0]");
        assert!(
            err.message.contains("ASCII name before the @"),
            "{}",
            err.message
        );
        let err = validate_notify_emails(&["josé@exämple.com".into()]).unwrap_err();
        assert!(err.message.contains("ASCII"), "{}", err.message);
        assert!(validate_notify_emails(&["a@xn--exmple-cua.com".into()]).is_ok());
        // A domain too long once converted is refused, not cut.
        let long = format!("a@{}.com", "ä".repeat(240));
        assert!(validate_notify_emails(&[long]).is_err());
    }

    #[test]
    fn limits_hold_exactly_at_their_bounds() {
        let base = "https://example.com/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_ENDPOINT_LEN - base.len()));
        assert_eq!(at_limit.len(), MAX_ENDPOINT_LEN);
        assert!(validate_endpoint(&at_limit, &rules()).is_ok());
        assert!(validate_endpoint(&format!("{at_limit}a"), &rules()).is_err());

        let ten: Vec<String> = (0..MAX_NOTIFY_EMAILS)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        assert_eq!(
            validate_notify_emails(&ten).unwrap().len(),
            MAX_NOTIFY_EMAILS
        );

        // 254 characters once the domain is in punycode: kept; 255: refused.
        let domain = "xn--exmple-cua.com"; // exämple.com
        let fill = |n: usize| format!("{}.{domain}", "d".repeat(n));
        let local = "a".repeat(60);
        let fits = format!(
            "{local}@{}",
            fill(MAX_EMAIL_LEN - local.len() - 2 - domain.len())
        );
        assert_eq!(fits.len(), MAX_EMAIL_LEN);
        let unicode = fits.replace(domain, "exämple.com");
        assert_eq!(
            validate_notify_emails(std::slice::from_ref(&unicode)).unwrap(),
            vec![fits]
        );
        let over = unicode.replacen("@d", "@dd", 1);
        assert!(over.len() < MAX_EMAIL_LEN, "short as sent");
        assert_eq!(
            validate_notify_emails(&[over]).unwrap_err().field,
            "notify_emails[0]",
            "255 characters in ASCII"
        );
    }

    #[test]
    fn any_case_of_a_hyphenated_uuid_names_the_id() {
        let id = WebhookId::generate();
        let text = id.to_string();
        assert_eq!(WebhookId::parse_any_case(&text), Some(id));
        assert_eq!(WebhookId::parse_any_case(&text.to_uppercase()), Some(id));
        assert_eq!(
            WebhookId::parse(&text.to_uppercase()),
            None,
            "parse wants the exact form"
        );
        assert_eq!(WebhookId::parse_any_case(&text.replace('-', "")), None);
        assert_eq!(WebhookId::parse_any_case(""), None);
    }

    #[test]
    fn every_spelling_of_localhost_is_loopback() {
        for url in [
            "https://localhost./",
            "https://LOCALHOST/",
            "https://LocalHost.:8443/x",
            "https://api.localhost./",
            "https://localhost.localdomain/",
            "https://ip6-localhost/",
            "https://ip6-loopback./",
        ] {
            let message = endpoint_error(url, &rules());
            assert!(message.contains("loopback"), "{url}: {message}");
        }
        assert!(validate_endpoint("https://localhost.example.com/", &rules()).is_ok());
        assert!(validate_endpoint("https://notlocalhost/", &rules()).is_ok());
        let local = EndpointRules {
            allow_http: true,
            addresses: AddressPolicy::with_allow_list(vec!["127.0.0.0/8".parse().unwrap()]),
        };
        assert!(validate_endpoint("http://localhost.:3001/hook", &local).is_ok());
    }

    #[test]
    fn a_secret_with_spaces_at_either_end_is_refused_with_the_reason() {
        for bad in [" s3cret", "s3cret ", " "] {
            let err = validate_secret(bad).unwrap_err();
            assert_eq!(err.field, "secret");
            assert!(
                err.message.contains("could never match"),
                "{bad:?}: {}",
                err.message
            );
        }
        assert!(validate_secret("s3cret with inner spaces").is_ok());
    }

    #[test]
    fn patch_distinguishes_absent_from_null_secret() {
        let absent: WebhookPatch = serde_json::from_str(r#"{"title":"x"}"#).unwrap();
        assert_eq!(absent.secret, None);
        let null: WebhookPatch = serde_json::from_str(r#"{"secret":null}"#).unwrap();
        assert_eq!(null.secret, Some(None));
        let changes = null.validate(&rules()).unwrap();
        assert_eq!(changes.secret, Some(None));
    }

    #[test]
    fn an_empty_patch_is_an_error() {
        let empty: WebhookPatch = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.validate(&rules()).unwrap_err().field, "body");
    }

    #[test]
    fn status_follows_enabled_and_failure_state() {
        let mut hook = input().validate(&rules()).unwrap().into_webhook(
            WebhookId::generate(),
            ProjectCode::parse("P").unwrap(),
            Timestamp::now(),
        );
        assert_eq!(hook.status(), Status::Active);
        hook.failing_since = Some(Timestamp::now());
        assert_eq!(hook.status(), Status::Failing);
        hook.enabled = false;
        assert_eq!(hook.status(), Status::Disabled);
    }

    #[test]
    fn webhook_ids_round_trip_and_reject_other_forms() {
        let id = WebhookId::generate();
        assert_eq!(WebhookId::parse(&id.to_string()), Some(id));
        assert_eq!(WebhookId::parse(&id.to_string().to_uppercase()), None);
        assert_eq!(WebhookId::parse("not-a-uuid"), None);
    }

    #[test]
    fn the_last_disabled_span_is_known_once_it_has_both_ends() {
        let mut hook = crate::testing::webhook("P");
        assert_eq!(hook.last_disabled(), None);
        let (from, to) = (
            Timestamp::parse("2026-11-29T00:00:00Z").unwrap(),
            Timestamp::parse("2026-11-30T00:00:00Z").unwrap(),
        );
        hook.last_disabled_from = Some(from);
        assert_eq!(hook.last_disabled(), None);
        hook.last_disabled_until = Some(to);
        assert_eq!(
            hook.last_disabled(),
            Some(crate::recover::Window { from, to })
        );
        hook.last_disabled_from = None;
        assert_eq!(hook.last_disabled(), None);
    }
}
