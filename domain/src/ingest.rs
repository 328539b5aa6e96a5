//! Publishing from EventBridge: what a rule on the operator's bus hands the
//! ingest function, read into the project, the idempotency key and the very
//! body `POST /projects/{project}/events` takes. Two shapes are accepted:
//!
//! - the whole EventBridge event, its `detail` the publish request
//!   `{"project": "DEMO", "event": {...}}`; the event's `id` is the key;
//! - what a rule's input transformer makes of an event of another shape:
//!   `{"idempotency_key": "<the event's id>", "project": "DEMO",
//!   "event": {...}}`.
//!
//! EventBridge delivers an event at least once, with the same `id` each
//! time: keyed by it, a repeat queues nothing more. Anything else is refused
//! with the reason, for the dead-letter queue.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{IdempotencyKey, ProjectCode, PublishInput};

/// A publish that arrived through EventBridge.
#[derive(Debug)]
pub struct BusPublish {
    pub project: ProjectCode,
    pub key: IdempotencyKey,
    pub input: PublishInput,
}

/// Why an event cannot be published; retrying will not change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The fields of either shape; an EventBridge event's other fields
/// (`source`, `time`, ...) are ignored.
#[derive(Deserialize)]
struct Arrived {
    id: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    detail: Option<Box<RawValue>>,
    idempotency_key: Option<String>,
    project: Option<String>,
    event: Option<Box<RawValue>>,
}

/// The publish request in an event's `detail`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    project: Option<String>,
    event: Option<Box<RawValue>>,
}

/// Reads what a rule delivered.
pub fn parse(raw: &str) -> Result<BusPublish, Refusal> {
    let arrived: Arrived = serde_json::from_str(raw)
        .map_err(|e| Refusal(format!("not a JSON object of the expected shape: {e}")))?;
    let (key, project, event, shape) = match (arrived.detail_type, arrived.detail) {
        (Some(_), Some(detail)) => {
            let request: Request = serde_json::from_str(detail.get()).map_err(|e| {
                Refusal(format!(
                    "detail: must be {{\"project\": ..., \"event\": {{...}}}}: {e}"
                ))
            })?;
            (arrived.id, request.project, request.event, "id")
        }
        (Some(_), None) => {
            return Err(Refusal(
                "detail: missing; it must be {\"project\": ..., \"event\": {...}}".into(),
            ));
        }
        (None, _) => (
            arrived.idempotency_key,
            arrived.project,
            arrived.event,
            "idempotency_key",
        ),
    };
    let key = key.ok_or_else(|| {
        Refusal(format!(
            "{shape}: missing; the EventBridge event's id makes a repeat of it publish nothing more"
        ))
    })?;
    let key =
        IdempotencyKey::parse(&key).map_err(|e| Refusal(format!("{shape}: {}", e.message)))?;
    let project = project.ok_or_else(|| Refusal("project: missing".into()))?;
    let project =
        ProjectCode::parse(&project).map_err(|e| Refusal(format!("project: {}", e.message)))?;
    let event = event.ok_or_else(|| {
        Refusal("event: missing; it is the body POST /projects/{project}/events takes".into())
    })?;
    let mut de = serde_json::Deserializer::from_str(event.get());
    let input: PublishInput = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "event".to_owned()
        } else {
            format!("event.{path}")
        };
        Refusal(format!("{at}: {}", e.inner()))
    })?;
    Ok(BusPublish {
        project,
        key,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(detail: &str) -> String {
        format!(
            r#"{{"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "Test run finished", "source": "com.example.runs", "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {detail}}}"#
        )
    }

    #[test]
    fn a_whole_event_is_keyed_by_its_id() {
        let got = parse(&whole(
            r#"{"project": "DEMO", "event": {"event_name": "run.completed", "payload": {"id": 2}, "team_member_id": 40}}"#,
        ))
        .unwrap();
        assert_eq!(got.key.as_str(), "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        assert_eq!(got.project.as_str(), "DEMO");
        assert_eq!(got.input.event_name.as_deref(), Some("run.completed"));
        assert_eq!(got.input.payload.unwrap().get(), r#"{"id": 2}"#);
        assert_eq!(got.input.team_member_id, Some(40));
    }

    #[test]
    fn a_transformed_input_carries_its_key() {
        let got = parse(
            r#"{"idempotency_key": "evt-1", "project": "DEMO", "event": {"event_name": "case.created", "payload": {}}}"#,
        )
        .unwrap();
        assert_eq!(got.key.as_str(), "evt-1");
        assert_eq!(got.input.event_name.as_deref(), Some("case.created"));
    }

    #[test]
    fn each_refusal_names_what_is_wrong() {
        let cases = [
            ("[]", "not a JSON object"),
            ("{not json", "not a JSON object"),
            (&whole(r#"{"event": {}}"#), "project: missing"),
            (
                &whole(r#"{"project": "DEMO", "event": {}, "extra": 1}"#),
                "detail: must be",
            ),
            (&whole(r#"{"project": "DEMO"}"#), "event: missing"),
            (
                &whole(r#"{"project": "DEMO", "event": "text"}"#),
                "event: invalid type",
            ),
            (
                &whole(r#"{"project": "DEMO", "event": {"event_name": 5}}"#),
                "event.event_name: invalid type",
            ),
            (
                &whole(r#"{"project": "DEMO", "event": {"colour": "red"}}"#),
                "event.colour: unknown field `colour`",
            ),
            (
                &whole(r#"{"project": "no such code!", "event": {}}"#),
                "project: ",
            ),
            (
                r#"{"project": "DEMO", "event": {}}"#,
                "idempotency_key: missing",
            ),
            (
                r#"{"idempotency_key": "has space", "project": "DEMO", "event": {}}"#,
                "idempotency_key: must be",
            ),
            (
                r#"{"version": "0", "detail-type": "x", "detail": {"project": "DEMO", "event": {}}}"#,
                "id: missing",
            ),
            (
                r#"{"version": "0", "id": "1", "detail-type": "x"}"#,
                "detail: missing",
            ),
        ];
        for (raw, reason) in cases {
            let refused = parse(raw).unwrap_err();
            assert!(refused.0.starts_with(reason), "{raw}: {}", refused.0);
        }
    }
}
