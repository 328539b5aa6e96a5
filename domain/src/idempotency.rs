//! Idempotent publishing (`docs/ARCHITECTURE.md`, "Idempotent publish"): a
//! publish with an `Idempotency-Key` is done once per key and body within
//! [`IDEMPOTENCY_WINDOW`]. A repeat answers what the first answered; a
//! repeat after a partly failed first try queues only the subscribers that
//! were not queued.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::delivery::PublishInput;
use crate::{FieldError, Timestamp};

/// How long a key is remembered after its first use.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// A publish that claimed its key and has not finished after this long
/// died (the config API's timeout is 10 s): a repeat takes over.
pub const CLAIM_STALE_AFTER: Duration = Duration::from_secs(30);
/// The longest key.
pub const MAX_KEY_CHARS: usize = 255;
/// The request header that carries the key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A client's key for one publish: 1 to 255 visible ASCII characters (a
/// UUID is a good one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > MAX_KEY_CHARS || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(FieldError::new(
                IDEMPOTENCY_HEADER,
                format!(
                    "must be 1 to {MAX_KEY_CHARS} visible ASCII characters, no spaces (a UUID is a good key)"
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PublishInput {
    /// What makes two publishes "the same body": the event name, the
    /// payload's bytes, the team member and the timestamp as sent (SHA-256,
    /// hex). Whitespace between the fields does not count; inside the
    /// payload it does, as the payload is delivered byte for byte.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!([
            self.event_name,
            self.payload.as_ref().map(|p| p.get()),
            self.team_member_id,
            self.timestamp,
        ]);
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// When a claim made at `claimed_at` is abandoned, as of `now`.
pub fn claim_is_stale(claimed_at: Timestamp, now: Timestamp) -> bool {
    claimed_at < now.before(CLAIM_STALE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> PublishInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_key_is_1_to_255_visible_characters() {
        assert_eq!(
            IdempotencyKey::parse("0193a1b2-c3d4").unwrap().as_str(),
            "0193a1b2-c3d4"
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in [
            String::new(),
            "k".repeat(256),
            "with space".into(),
            "é".into(),
            "tab\t".into(),
        ] {
            let err = IdempotencyKey::parse(&bad).unwrap_err();
            assert_eq!(err.field, "Idempotency-Key", "{bad:?}");
        }
    }

    #[test]
    fn the_same_body_has_the_same_fingerprint_and_any_field_changes_it() {
        let base =
            r#"{"event_name":"run.completed","payload":{"id":1},"team_member_id":4,"timestamp":5}"#;
        let fingerprint = input(base).fingerprint();
        assert_eq!(fingerprint.len(), 64);
        let spaced = r#"{ "timestamp": 5, "event_name": "run.completed", "payload": {"id":1}, "team_member_id": 4 }"#;
        assert_eq!(
            input(spaced).fingerprint(),
            fingerprint,
            "field order and spacing"
        );
        for other in [
            r#"{"event_name":"run.aborted","payload":{"id":1},"team_member_id":4,"timestamp":5}"#,
            r#"{"event_name":"run.completed","payload":{"id":2},"team_member_id":4,"timestamp":5}"#,
            r#"{"event_name":"run.completed","payload":{"id": 1},"team_member_id":4,"timestamp":5}"#,
            r#"{"event_name":"run.completed","payload":{"id":1},"team_member_id":5,"timestamp":5}"#,
            r#"{"event_name":"run.completed","payload":{"id":1},"team_member_id":4,"timestamp":6}"#,
            r#"{"event_name":"run.completed","payload":{"id":1},"team_member_id":4}"#,
        ] {
            assert_ne!(input(other).fingerprint(), fingerprint, "{other}");
        }
    }

    #[test]
    fn a_key_is_remembered_for_a_day() {
        assert_eq!(IDEMPOTENCY_WINDOW, Duration::from_secs(86_400));
    }

    #[test]
    fn a_claim_is_stale_after_30_seconds() {
        let now = Timestamp::parse("2026-12-01T10:00:30Z").unwrap();
        let at = |raw| Timestamp::parse(raw).unwrap();
        assert!(
            !claim_is_stale(at("2026-12-01T10:00:00Z"), now),
            "exactly 30 s"
        );
        assert!(claim_is_stale(at("2026-12-01T09:59:59.999Z"), now));
        assert!(!claim_is_stale(at("2026-12-01T10:00:29Z"), now));
    }
}
