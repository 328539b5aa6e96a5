//! Operational events: what the operator's account hears when a webhook's
//! state changes (it started failing, was disabled, recovered, was
//! re-enabled; a delivery ran out of retries; a bulk recovery finished).
//! They go to an EventBridge bus with [`SOURCE`] and one stable
//! `detail-type` per change ([`Change::detail_type`]), so that a rule routes
//! them (to SNS, a chat channel, a ticket queue) without code of ours.
//!
//! Each is put once per state change: the conditional write that made the
//! change says so, and only that writer puts it. None comes from the
//! delivery path of a healthy webhook (it writes nothing). A detail names
//! the webhook (project, id, title) and its endpoint's host only: the URL
//! may carry credentials in its path or query. It never holds a secret, a
//! token, a header value or an e-mail address.

use serde::Serialize;
use uuid::Uuid;

use crate::recover::Progress;
use crate::{EventName, ProjectCode, Timestamp, Webhook, WebhookId};

/// The `source` of every operational event.
pub const SOURCE: &str = "project-webhooks";

/// Why a webhook was disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableCause {
    /// No successful delivery for the auto-disable window (2 days).
    NoSuccess,
    /// A delivery timed out, with `DisableOnTimeout`.
    Timeout,
    /// The endpoint answered 410 Gone, with `DisableOnGone`.
    Gone,
}

impl DisableCause {
    /// Why the sweep disables `webhook` at `cutoff`: failing since before
    /// it is the window (as `notice::is_due` reads it); a webhook due
    /// sooner was filed due by a timeout. (A 410 disables without the
    /// sweep, which never sees that webhook.)
    pub fn of_sweep(webhook: &Webhook, cutoff: Timestamp) -> Self {
        match webhook.failing_since {
            Some(since) if since >= cutoff => DisableCause::Timeout,
            _ => DisableCause::NoSuccess,
        }
    }
}

/// A state change, with what the operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Change {
    /// The first failure after a success (or since it was created).
    Failing {
        failing_since: Timestamp,
        last_error: String,
    },
    Disabled {
        reason: DisableCause,
        #[serde(skip_serializing_if = "Option::is_none")]
        failing_since: Option<Timestamp>,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// A success after failures.
    Recovered {
        failing_since: Timestamp,
        failures: u64,
    },
    /// Turned on again by a person (through the API or the page).
    ReEnabled {
        #[serde(skip_serializing_if = "Option::is_none")]
        disabled_at: Option<Timestamp>,
    },
    /// A delivery's last attempt of its retry schedule failed.
    RetriesExhausted {
        delivery_id: Uuid,
        event_name: EventName,
        attempts: u32,
        last_error: String,
    },
    /// A bulk recovery sent everything it found.
    RecoveryFinished {
        recovery_id: Uuid,
        found: u64,
        delivered: u64,
        failed: u64,
        skipped: u64,
        expired: u64,
    },
}

impl Change {
    /// The event's `detail-type`: stable, one per change.
    pub fn detail_type(&self) -> &'static str {
        match self {
            Change::Failing { .. } => "Webhook Failing",
            Change::Disabled { .. } => "Webhook Disabled",
            Change::Recovered { .. } => "Webhook Recovered",
            Change::ReEnabled { .. } => "Webhook Re-enabled",
            Change::RetriesExhausted { .. } => "Delivery Retries Exhausted",
            Change::RecoveryFinished { .. } => "Recovery Finished",
        }
    }

    /// A recovery's end, from its progress.
    pub fn recovery_finished(recovery_id: Uuid, progress: &Progress) -> Self {
        Change::RecoveryFinished {
            recovery_id,
            found: progress.found,
            delivered: progress.delivered,
            failed: progress.failed,
            skipped: progress.skipped,
            expired: progress.expired,
        }
    }
}

/// Every `detail-type` there is.
pub const DETAIL_TYPES: [&str; 6] = [
    "Webhook Failing",
    "Webhook Disabled",
    "Webhook Recovered",
    "Webhook Re-enabled",
    "Delivery Retries Exhausted",
    "Recovery Finished",
];

/// An event's `detail`: the webhook, when, and the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    pub project: ProjectCode,
    pub webhook_id: WebhookId,
    /// Absent only when the webhook was deleted before the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_host: Option<String>,
    /// When the change was made.
    pub at: Timestamp,
    #[serde(flatten)]
    pub change: Change,
}

/// One operational event, ready to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationalEvent {
    pub detail: Detail,
}

impl OperationalEvent {
    /// `change` of `webhook`, made at `at`.
    pub fn of(webhook: &Webhook, at: Timestamp, change: Change) -> Self {
        Self {
            detail: Detail {
                project: webhook.project.clone(),
                webhook_id: webhook.id,
                title: Some(webhook.title.clone()),
                endpoint_host: webhook.endpoint.host_str().map(str::to_owned),
                at,
                change,
            },
        }
    }

    /// `change` of a webhook known only by its key (deleted meanwhile).
    pub fn of_key(
        project: ProjectCode,
        webhook_id: WebhookId,
        at: Timestamp,
        change: Change,
    ) -> Self {
        Self {
            detail: Detail {
                project,
                webhook_id,
                title: None,
                endpoint_host: None,
                at,
                change,
            },
        }
    }

    pub fn detail_type(&self) -> &'static str {
        self.detail.change.detail_type()
    }

    /// The `detail` as EventBridge takes it: a JSON object in a string.
    pub fn detail_json(&self) -> String {
        // A struct of strings, numbers and timestamps always serializes.
        serde_json::to_string(&self.detail).unwrap_or_else(|_| "{}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::webhook;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn a_detail_names_the_webhook_and_its_host_never_the_url_secret_or_e_mails() {
        let mut hook = webhook("DEMO");
        hook.title = "Slack bridge".into();
        hook.endpoint = "https://user:pass@hooks.example.com:8443/in?token=abc"
            .parse()
            .unwrap();
        hook.notify_emails = vec!["owner@example.com".into()];
        let event = OperationalEvent::of(
            &hook,
            at("2026-12-01T10:00:00Z"),
            Change::Failing {
                failing_since: at("2026-12-01T10:00:00Z"),
                last_error: "HTTP 503".into(),
            },
        );
        let detail: serde_json::Value = serde_json::from_str(&event.detail_json()).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "project": "DEMO",
                "webhook_id": hook.id.to_string(),
                "title": "Slack bridge",
                "endpoint_host": "hooks.example.com",
                "at": "2026-12-01T10:00:00.000Z",
                "failing_since": "2026-12-01T10:00:00.000Z",
                "last_error": "HTTP 503",
            })
        );
        let text = event.detail_json();
        for leak in ["pass", "token", "abc", "owner@", "/in"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert_eq!(event.detail_type(), "Webhook Failing");
    }

    #[test]
    fn each_change_has_its_own_detail_type_and_fields() {
        let id = Uuid::nil();
        let changes = [
            Change::Failing {
                failing_since: at("2026-12-01T10:00:00Z"),
                last_error: "e".into(),
            },
            Change::Disabled {
                reason: DisableCause::Gone,
                failing_since: None,
                last_error: None,
            },
            Change::Recovered {
                failing_since: at("2026-12-01T10:00:00Z"),
                failures: 3,
            },
            Change::ReEnabled { disabled_at: None },
            Change::RetriesExhausted {
                delivery_id: id,
                event_name: "run.completed".parse().unwrap(),
                attempts: 8,
                last_error: "e".into(),
            },
            Change::recovery_finished(
                id,
                &Progress {
                    found: 5,
                    delivered: 4,
                    failed: 1,
                    ..Progress::default()
                },
            ),
        ];
        let types: Vec<_> = changes.iter().map(Change::detail_type).collect();
        assert_eq!(types, DETAIL_TYPES);
        let finished = serde_json::to_value(&changes[5]).unwrap();
        assert_eq!(finished["found"], 5);
        assert_eq!(finished["delivered"], 4);
        assert_eq!(finished["failed"], 1);
        let disabled = serde_json::to_value(&changes[1]).unwrap();
        assert_eq!(disabled, serde_json::json!({"reason": "gone"}));
        let exhausted = serde_json::to_value(&changes[4]).unwrap();
        assert_eq!(exhausted["attempts"], 8);
        assert_eq!(exhausted["event_name"], "run.completed");
    }

    #[test]
    fn the_sweep_tells_a_timeout_from_the_window() {
        let cutoff = at("2026-11-29T10:00:00Z");
        let mut hook = webhook("DEMO");
        hook.failing_since = Some(at("2026-11-29T09:59:59Z"));
        assert_eq!(
            DisableCause::of_sweep(&hook, cutoff),
            DisableCause::NoSuccess
        );
        hook.failing_since = Some(cutoff);
        assert_eq!(DisableCause::of_sweep(&hook, cutoff), DisableCause::Timeout);
        hook.failing_since = Some(at("2026-11-29T10:00:01Z"));
        assert_eq!(DisableCause::of_sweep(&hook, cutoff), DisableCause::Timeout);
    }

    #[test]
    fn a_deleted_webhook_is_named_by_its_key() {
        let event = OperationalEvent::of_key(
            ProjectCode::parse("DEMO").unwrap(),
            WebhookId::generate(),
            at("2026-12-01T10:00:00Z"),
            Change::ReEnabled { disabled_at: None },
        );
        let detail: serde_json::Value = serde_json::from_str(&event.detail_json()).unwrap();
        assert!(detail.get("title").is_none());
        assert_eq!(detail["project"], "DEMO");
    }
}
