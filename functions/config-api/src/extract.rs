//! Request extractors whose rejections are [`ApiError`]s.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::MAX_BODY_BYTES;
use crate::error::ApiError;

/// A JSON request body: 415 unless `Content-Type` is JSON, 413 over
/// [`MAX_BODY_BYTES`], 400 naming the field when it does not parse.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::unsupported_media_type());
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large(MAX_BODY_BYTES)
                } else {
                    ApiError::invalid_request("the request body could not be read")
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a whole JSON document, naming the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = (path != "." && !path.is_empty()).then_some(path);
        match field {
            // The message could quote the value; a secret is never echoed.
            Some(field) if field == "secret" => {
                ApiError::invalid_request("must be a string, or null to remove it")
                    .with_field(field)
            }
            Some(field) => ApiError::invalid_request(describe(&inner)).with_field(field),
            None => ApiError::invalid_request(describe(&inner)),
        }
    })?;
    de.end()
        .map_err(|err| ApiError::invalid_request(describe(&err)))?;
    Ok(value)
}

fn describe(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof => format!("the body is not valid JSON: {err}"),
        Category::Data | Category::Io => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
    }

    #[test]
    fn secret_values_are_never_echoed_in_errors() {
        let err =
            parse_json::<shared::domain::WebhookInput>(br#"{"secret": 987654321}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("secret"));
        assert!(!err.message.contains("987654321"));
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = parse_json::<serde_json::Value>(br#"{} {"#).unwrap_err();
        assert_eq!(err.code, "invalid_request");
    }
}
