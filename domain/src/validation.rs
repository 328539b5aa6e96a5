//! The error every validation rule returns: which field, and what is wrong.

use std::fmt;

use serde::Deserialize;

/// A rejected input field. `field` names the request field (`title`,
/// `events`, `notify_emails[1]`, ...) so a client can show the message beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// For `#[serde(default, deserialize_with = "not_null")]` on an `Option<T>`
/// request field: absent is `None`, `null` is refused as the wrong type (the
/// API's description does not allow it), any other value is `Some`.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The largest integer JSON carries exactly (2^53 - 1), the bound of the
/// API's integer fields.
pub const MAX_JSON_INTEGER: i64 = 9_007_199_254_740_991;

/// An integer request field, also when written with a zero fraction
/// (`43563.0`): JSON Schema's `integer` admits both. `null` is refused.
pub fn integer<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number
        .as_i64()
        .filter(|n| n.unsigned_abs() <= MAX_JSON_INTEGER.unsigned_abs())
    {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f)
            if number.as_i64().is_none()
                && f.fract() == 0.0
                && f.abs() <= MAX_JSON_INTEGER as f64 =>
        {
            Ok(Some(f as i64))
        }
        _ => Err(D::Error::custom(format!(
            "expected an integer from -{MAX_JSON_INTEGER} to {MAX_JSON_INTEGER}, got {number}"
        ))),
    }
}

/// As [`integer`], and `null` is `None`.
pub fn integer_or_null<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value) => integer(value).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Fields {
        #[serde(default, deserialize_with = "not_null")]
        name: Option<String>,
        #[serde(default, deserialize_with = "integer")]
        at: Option<i64>,
        #[serde(default, deserialize_with = "integer_or_null")]
        who: Option<i64>,
    }

    fn parse(json: &str) -> Result<Fields, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_field_error_shows_the_field_then_the_message() {
        let err = FieldError::new("notify_emails[1]", "must be an e-mail address");
        assert_eq!(
            err.to_string(),
            "notify_emails[1]: must be an e-mail address"
        );
    }

    #[test]
    fn absent_is_none_and_null_is_refused_unless_allowed() {
        let f = parse("{}").unwrap();
        assert_eq!((f.name, f.at, f.who), (None, None, None));
        assert!(parse(r#"{"name": null}"#).is_err());
        assert!(parse(r#"{"at": null}"#).is_err());
        assert_eq!(parse(r#"{"who": null}"#).unwrap().who, None);
        assert_eq!(
            parse(r#"{"name": "x"}"#).unwrap().name.as_deref(),
            Some("x")
        );
    }

    #[test]
    fn integers_may_carry_a_zero_fraction_within_the_exact_range() {
        assert_eq!(parse(r#"{"at": 43563.0}"#).unwrap().at, Some(43563));
        assert_eq!(parse(r#"{"at": -7}"#).unwrap().at, Some(-7));
        assert_eq!(parse(r#"{"who": 40.0}"#).unwrap().who, Some(40));
        assert_eq!(
            parse(r#"{"at": 9007199254740991.0}"#).unwrap().at,
            Some(MAX_JSON_INTEGER)
        );
        for bad in [
            r#"{"at": 1.5}"#,
            r#"{"at": 1e300}"#,
            r#"{"at": 9007199254740993.0}"#,
            r#"{"at": 18446744073709551615}"#,
            r#"{"at": 9007199254740992}"#,
            r#"{"at": -9223372036854775808}"#,
            r#"{"at": "1"}"#,
            r#"{"who": 0.5}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
