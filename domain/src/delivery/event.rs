//! A published event: the publish body, its checks and the envelope every
//! subscribed endpoint receives.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::validation::{integer, integer_or_null, not_null};
use crate::{EventName, FieldError, ProjectCode, Timestamp};

/// Largest envelope accepted for publishing. The SQS message carrying it adds
/// a few hundred bytes and stays well inside the queue's 1 MiB limit.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// The body of `POST /projects/{project}/events`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishInput {
    #[serde(default, deserialize_with = "not_null")]
    pub event_name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub payload: Option<Box<RawValue>>,
    /// `null` is allowed: Qase sends it for events no person caused.
    #[serde(default, deserialize_with = "integer_or_null")]
    pub team_member_id: Option<i64>,
    #[serde(default, deserialize_with = "integer")]
    pub timestamp: Option<i64>,
}

/// The latest `timestamp` accepted: the last second of year 9999.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// An event accepted for publishing.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    pub project: ProjectCode,
    pub name: EventName,
    /// Unix seconds when the event happened.
    pub timestamp: i64,
    pub payload: Box<RawValue>,
    pub team_member_id: Option<i64>,
}

/// The JSON an endpoint receives, fields in Qase's order.
#[derive(Serialize)]
struct Envelope<'a> {
    event_name: EventName,
    timestamp: i64,
    payload: &'a RawValue,
    team_member_id: Option<i64>,
    project_code: &'a ProjectCode,
}

impl PublishInput {
    /// Checks the fields; `now` fills a missing timestamp.
    pub fn validate(self, project: ProjectCode, now: Timestamp) -> Result<Event, FieldError> {
        let raw_name = self
            .event_name
            .ok_or_else(|| FieldError::new("event_name", "is required"))?;
        let name = raw_name.parse::<EventName>().map_err(|_| {
            FieldError::new(
                "event_name",
                format!("unknown event name {raw_name:?}; GET /event-types lists them"),
            )
        })?;
        let payload = self
            .payload
            .ok_or_else(|| FieldError::new("payload", "is required"))?;
        if !payload.get().trim_start().starts_with('{') {
            return Err(FieldError::new("payload", "must be a JSON object"));
        }
        if let Some(c) = payload.get().chars().find(|c| !queue_carries(*c)) {
            return Err(FieldError::new(
                "payload",
                format!(
                    "contains U+{:04X}, a character the delivery queue cannot carry; \
                     send it escaped (\\u{:04x}) or leave it out",
                    u32::from(c),
                    u32::from(c)
                ),
            ));
        }
        let timestamp = match self.timestamp {
            Some(t) if !(0..=MAX_TIMESTAMP).contains(&t) => {
                return Err(FieldError::new(
                    "timestamp",
                    format!("must be Unix seconds from 0 to {MAX_TIMESTAMP}"),
                ));
            }
            Some(t) => t,
            None => now.unix_seconds(),
        };
        Ok(Event {
            id: Uuid::now_v7(),
            project,
            name,
            timestamp,
            payload,
            team_member_id: self.team_member_id,
        })
    }
}

/// Whether SQS carries `c` in a message body: tab, line feed, carriage
/// return, U+0020 to U+D7FF, U+E000 to U+FFFD and U+10000 to U+10FFFF. It
/// refuses the rest (U+FFFE, U+FFFF, other control characters), so an event
/// holding one could never be queued.
pub fn queue_carries(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Whether an envelope is small enough to publish (at most 256 KiB).
pub fn envelope_fits(envelope: &RawValue) -> bool {
    envelope.get().len() <= MAX_ENVELOPE_BYTES
}

impl Event {
    /// The exact bytes every subscribed endpoint receives.
    pub fn envelope(&self) -> Result<Box<RawValue>, serde_json::Error> {
        let text = serde_json::to_string(&Envelope {
            event_name: self.name,
            timestamp: self.timestamp,
            payload: &self.payload,
            team_member_id: self.team_member_id,
            project_code: &self.project,
        })?;
        RawValue::from_string(text)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::test_support::{input, project};

    #[test]
    fn envelope_matches_the_qase_example_byte_for_byte() {
        let event = input(
            r#"{"event_name":"run.completed","timestamp":1650540194,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0},"team_member_id":40}"#,
        )
        .validate(project(), Timestamp::now())
        .unwrap();
        let fixture = r#"{"event_name":"run.completed","timestamp":1650540194,"payload":{"id":2,"cases":14,"passed":0,"failed":0,"blocked":0,"duration":0},"team_member_id":40,"project_code":"ID"}"#;
        assert_eq!(event.envelope().unwrap().get(), fixture);
    }

    #[test]
    fn publish_defaults_timestamp_and_keeps_payload_bytes() {
        let now = Timestamp::parse("2026-11-28T10:00:00Z").unwrap();
        let event = input(r#"{"event_name":"case.created","payload":{ "b" : 1,"a":[ ] }}"#)
            .validate(project(), now)
            .unwrap();
        assert_eq!(event.timestamp, now.unix_seconds());
        assert_eq!(
            event.envelope().unwrap().get(),
            format!(
                r#"{{"event_name":"case.created","timestamp":{},"payload":{{ "b" : 1,"a":[ ] }},"team_member_id":null,"project_code":"ID"}}"#,
                now.unix_seconds()
            )
        );
    }

    #[test]
    fn publish_validation_names_the_field() {
        for (json, field) in [
            (r#"{"payload":{}}"#, "event_name"),
            (
                r#"{"event_name":"run.exploded","payload":{}}"#,
                "event_name",
            ),
            (r#"{"event_name":"run.completed"}"#, "payload"),
            (r#"{"event_name":"run.completed","payload":[1]}"#, "payload"),
            (r#"{"event_name":"run.completed","payload":"x"}"#, "payload"),
            (
                r#"{"event_name":"run.completed","payload":{},"timestamp":-1}"#,
                "timestamp",
            ),
        ] {
            let err = input(json)
                .validate(project(), Timestamp::now())
                .unwrap_err();
            assert_eq!(err.field, field, "{json}");
        }
    }

    #[test]
    fn an_envelope_of_exactly_256_kib_fits_and_one_byte_more_does_not() {
        let envelope_of = |len: usize| {
            let text = format!("\"{}\"", "a".repeat(len - 2));
            RawValue::from_string(text).unwrap()
        };
        assert!(envelope_fits(&envelope_of(256 * 1024)));
        assert!(!envelope_fits(&envelope_of(256 * 1024 + 1)));
    }

    #[test]
    fn characters_the_queue_refuses_are_refused_at_publish() {
        for (c, shown) in [
            ('\u{FFFE}', "U+FFFE"),
            ('\u{FFFF}', "U+FFFF"),
            ('\u{1FFFF}', ""),
        ] {
            let json = format!(r#"{{"event_name":"run.completed","payload":{{"x":"a{c}b"}}}}"#);
            let result = input(&json).validate(project(), Timestamp::now());
            if shown.is_empty() {
                assert!(result.is_ok(), "U+1FFFF is carried");
                continue;
            }
            let err = result.unwrap_err();
            assert_eq!(err.field, "payload");
            assert!(err.message.contains(shown), "{}", err.message);
        }
        // Escaped, the same characters are plain ASCII and travel.
        let escaped = r#"{"event_name":"run.completed","payload":{"x":"\uffff"}}"#;
        assert!(input(escaped).validate(project(), Timestamp::now()).is_ok());
    }

    #[test]
    fn the_queue_carries_exactly_the_xml_character_ranges() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
            'é',
        ] {
            assert!(queue_carries(c), "{:04X}", u32::from(c));
        }
        for c in [
            '\u{0}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!queue_carries(c), "{:04X}", u32::from(c));
        }
    }
}
