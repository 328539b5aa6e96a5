//! Custom headers per webhook (`docs/ARCHITECTURE.md`, "Custom headers"):
//! what a receiver behind an API gateway needs on every delivery (its own
//! auth header, a routing key). Values may hold credentials, so they are
//! write-only: stored, sent, and shown nowhere (views show the names, the
//! history and logs mask the values). Names the service owns, or that HTTP
//! reserves for the connection, are refused with the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FieldError, Secret};

/// Most custom headers a webhook carries.
pub const MAX_CUSTOM_HEADERS: usize = 10;
/// Longest header name.
pub const MAX_HEADER_NAME_CHARS: usize = 64;
/// Longest header value, in bytes (so a webhook's headers stay under
/// about 11 KB in all).
pub const MAX_HEADER_VALUE_BYTES: usize = 1024;

/// Names the service sets on every delivery, and HTTP's hop-by-hop and
/// framing headers: a custom value would break the request or the
/// signature's meaning.
pub const RESERVED: [&str; 15] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];
/// Prefixes of the names the service owns: its Qase headers and the
/// Standard Webhooks signature headers.
pub const RESERVED_PREFIXES: [&str; 2] = ["x-qase-", "webhook-"];

/// A webhook's custom headers: lower-case names to write-only values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomHeaders(BTreeMap<String, Secret>);

impl CustomHeaders {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, lower case, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Each name with its value, to send.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// Checks a set as sent (`headers` of a create or a PATCH, the whole
    /// set): names are HTTP tokens the service does not own, values are
    /// header-safe text, within the limits. Two names for one header (they
    /// differ only in case) are one header whose values are joined with
    /// `, `, in the names' order, as HTTP combines a repeated field.
    pub fn validate(raw: BTreeMap<String, String>) -> Result<Self, FieldError> {
        let field = |name: &str| format!("headers.{name}");
        if raw.len() > MAX_CUSTOM_HEADERS {
            return Err(FieldError::new(
                "headers",
                format!("at most {MAX_CUSTOM_HEADERS} headers"),
            ));
        }
        let mut headers: BTreeMap<String, Secret> = BTreeMap::new();
        for (name, value) in raw {
            let lower = name.to_ascii_lowercase();
            if name.is_empty()
                || name.chars().count() > MAX_HEADER_NAME_CHARS
                || !name.bytes().all(is_token_byte)
            {
                return Err(FieldError::new(
                    field(&name),
                    format!(
                        "a header name is 1 to {MAX_HEADER_NAME_CHARS} letters, digits or !#$%&'*+-.^_`|~"
                    ),
                ));
            }
            if let Some(reason) = reserved(&lower) {
                return Err(FieldError::new(field(&name), reason));
            }
            if value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(FieldError::new(
                    field(&name),
                    format!("a value is at most {MAX_HEADER_VALUE_BYTES} bytes"),
                ));
            }
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                || value.trim() != value
            {
                return Err(FieldError::new(
                    field(&name),
                    "a value is printable ASCII, not empty, without spaces around it (it is sent as an HTTP header)",
                ));
            }
            let value = match headers.remove(&lower) {
                Some(earlier) => format!("{}, {value}", earlier.expose()),
                None => value,
            };
            headers.insert(lower, Secret::new(value));
        }
        Ok(Self(headers))
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Why a lower-case name may not be set, if it may not.
pub fn reserved(lower: &str) -> Option<&'static str> {
    if RESERVED.contains(&lower) {
        Some("is set by the service or by HTTP itself; it cannot be a custom header")
    } else if RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        Some("X-Qase-* and webhook-* headers are the service's own; choose another name")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_valid_set_is_kept_with_lower_case_names() {
        let headers = CustomHeaders::validate(set(&[
            ("Authorization", "Bearer abc.def"),
            ("X-Route", "team-7"),
        ]))
        .unwrap();
        assert_eq!(
            headers.names().collect::<Vec<_>>(),
            ["authorization", "x-route"]
        );
        let values: Vec<&str> = headers.iter().map(|(_, v)| v.expose()).collect();
        assert_eq!(values, ["Bearer abc.def", "team-7"]);
        assert!(!headers.is_empty());
        assert!(CustomHeaders::validate(BTreeMap::new()).unwrap().is_empty());
        assert!(
            !format!("{headers:?}").contains("abc.def"),
            "values never print"
        );
    }

    #[test]
    fn names_the_service_owns_are_refused_with_the_field_and_the_reason() {
        for name in [
            "Host",
            "content-length",
            "Content-Type",
            "User-Agent",
            "Connection",
            "Transfer-Encoding",
            "TE",
            "Upgrade",
            "Keep-Alive",
            "Proxy-Authorization",
            "Trailer",
            "Expect",
            "Content-Encoding",
            "Proxy-Connection",
            "Proxy-Authenticate",
        ] {
            let err = CustomHeaders::validate(set(&[(name, "v")])).unwrap_err();
            assert_eq!(err.field, format!("headers.{name}"));
            assert!(err.message.contains("set by the service"), "{name}");
        }
        for name in [
            "X-Qase-Secret",
            "x-qase-anything",
            "webhook-signature",
            "Webhook-Id",
        ] {
            let err = CustomHeaders::validate(set(&[(name, "v")])).unwrap_err();
            assert_eq!(err.field, format!("headers.{name}"));
            assert!(err.message.contains("the service's own"), "{name}");
        }
        assert!(CustomHeaders::validate(set(&[("X-Qase", "v"), ("Webhook", "v")])).is_ok());
    }

    #[test]
    fn names_and_values_must_be_header_safe_and_within_the_limits() {
        for name in ["", "with space", "colon:", "é", &"n".repeat(65)] {
            let err = CustomHeaders::validate(set(&[(name, "v")])).unwrap_err();
            assert_eq!(err.field, format!("headers.{name}"), "{name:?}");
        }
        assert!(CustomHeaders::validate(set(&[(&"n".repeat(64), "v")])).is_ok());
        assert!(CustomHeaders::validate(set(&[("a!#$%&'*+-.^_`|~9", "v")])).is_ok());
        for value in ["", " padded", "padded ", "line\nbreak", "nul\0", "é"] {
            let err = CustomHeaders::validate(set(&[("x-a", value)])).unwrap_err();
            assert_eq!(err.field, "headers.x-a", "{value:?}");
        }
        assert!(CustomHeaders::validate(set(&[("x-a", "in\tside ok")])).is_ok());
        let long = "v".repeat(MAX_HEADER_VALUE_BYTES);
        assert!(CustomHeaders::validate(set(&[("x-a", &long)])).is_ok());
        let err = CustomHeaders::validate(set(&[("x-a", &format!("{long}v"))])).unwrap_err();
        assert!(err.message.contains("1024 bytes"));
        let many: Vec<(String, String)> = (0..11)
            .map(|i| (format!("x-{i}"), "v".to_owned()))
            .collect();
        let err = CustomHeaders::validate(many.iter().cloned().collect()).unwrap_err();
        assert_eq!(err.field, "headers");
        let ten: BTreeMap<String, String> = many.into_iter().take(10).collect();
        assert!(CustomHeaders::validate(ten).is_ok());
        // Ten of the longest: about 11 KB in all.
        let big: BTreeMap<String, String> = (0..10)
            .map(|i| (format!("x-{i}"), "v".repeat(1024)))
            .collect();
        assert!(CustomHeaders::validate(big).is_ok());
    }

    #[test]
    fn two_names_for_one_header_are_one_header_with_both_values() {
        let headers = CustomHeaders::validate(set(&[("X-Key", "a"), ("x-key", "b")])).unwrap();
        let all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n, v.expose())).collect();
        assert_eq!(all, [("x-key", "a, b")]);
    }
}
