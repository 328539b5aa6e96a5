//! What the API shows of a webhook: everything but the secret, which is
//! write-only and shown only as `has_secret`, the custom header values,
//! write-only too (the names are shown, each value as `***`), and the
//! signing secret, shown only by create and by its own routes.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::domain::{EventName, ProjectCode, RetryPolicy, Status, Timestamp, Webhook, WebhookId};

#[derive(Debug, Serialize)]
pub struct WebhookView {
    pub id: WebhookId,
    pub project: ProjectCode,
    pub title: String,
    pub endpoint: String,
    pub has_secret: bool,
    /// The custom headers' names, each value shown as `***`.
    pub headers: BTreeMap<String, &'static str>,
    pub events: Vec<EventName>,
    pub enabled: bool,
    pub notify_emails: Vec<String>,
    pub retry_policy: RetryPolicy,
    pub status: Status,
    pub failing_since: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    pub last_failure_reason: Option<String>,
    pub failure_count: u64,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Webhook> for WebhookView {
    fn from(hook: Webhook) -> Self {
        Self {
            status: hook.status(),
            id: hook.id,
            project: hook.project,
            title: hook.title,
            endpoint: hook.endpoint.to_string(),
            has_secret: hook.secret.is_some(),
            headers: hook
                .headers
                .names()
                .map(|name| (name.to_owned(), shared::domain::history::MASKED))
                .collect(),
            events: hook.events.into_iter().collect(),
            enabled: hook.enabled,
            notify_emails: hook.notify_emails,
            retry_policy: hook.retry_policy,
            failing_since: hook.failing_since,
            last_failure_at: hook.last_failure_at,
            last_failure_reason: hook.last_failure_reason,
            failure_count: hook.failure_count,
            disabled_at: hook.disabled_at,
            disabled_reason: hook.disabled_reason,
            created_at: hook.created_at,
            updated_at: hook.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The create response: the webhook and, this once, its signing secret.
#[derive(Debug, Serialize)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub signing_secret: String,
}

/// `GET .../signing-secret` and its rotation.
#[derive(Debug, Serialize)]
pub struct SigningSecretView {
    pub signing_secret: String,
    /// After a rotation: until when the replaced secret still signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<Timestamp>,
}
