//! Secrets Manager: the admin token, read once at cold start.

use aws_sdk_secretsmanager::Client;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read secret {id}")]
    Read {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("secret {0} has no string value")]
    Empty(String),
}

/// The `SecretString` of a secret, by name or ARN.
pub async fn read_secret_string(
    sdk: &aws_config::SdkConfig,
    id: &str,
) -> Result<String, SecretError> {
    let out = Client::new(sdk)
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            id: id.to_owned(),
            source: Box::new(e),
        })?;
    out.secret_string()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| SecretError::Empty(id.to_owned()))
}
