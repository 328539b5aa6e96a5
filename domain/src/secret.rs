//! The webhook's secrets, never printed: the shared secret (write-only,
//! sent in `X-Qase-Secret`) and the signing secret (deliveries are signed
//! with it, as the Standard Webhooks specification describes).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::token::RandomnessUnavailable;

/// A webhook's shared secret, sent verbatim in `X-Qase-Secret`.
///
/// `Debug` and `Display` are redacted so a secret can't reach a log line by
/// accident; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Every signing secret starts with this, as the Standard Webhooks
/// libraries expect.
pub const SIGNING_PREFIX: &str = "whsec_";

/// A webhook's signing secret: `whsec_` and the base64 of 32 random bytes.
/// Shown at create and by its own route; never in lists, logs or messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// A new secret: 256 random bits.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomnessUnavailable::new)?;
        Ok(Self(format!("{SIGNING_PREFIX}{}", STANDARD.encode(bytes))))
    }

    /// A stored or published secret; `None` unless it is `whsec_` and base64.
    pub fn parse(raw: &str) -> Option<Self> {
        let secret = Self(raw.to_owned());
        secret.key().map(|_| secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes the base64 after the prefix stands for.
    fn key(&self) -> Option<Vec<u8>> {
        let encoded = self.0.strip_prefix(SIGNING_PREFIX)?;
        STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
    }

    /// The Standard Webhooks signature of one request: `v1,` and the base64
    /// HMAC-SHA256 of `{id}.{timestamp}.{body}`. `None` for a secret that is
    /// not `whsec_` and base64 (one this service never generates).
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> Option<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key()?).ok()?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        Some(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and of its
    /// reference libraries' tests).
    #[test]
    fn signs_the_specifications_example() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret
                .sign(
                    "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    1614265330,
                    r#"{"test": 2432232314}"#
                )
                .as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn a_generated_secret_has_the_prefix_and_32_bytes_and_is_never_printed() {
        let a = SigningSecret::generate().unwrap();
        let b = SigningSecret::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(SIGNING_PREFIX));
        assert_eq!(a.key().unwrap().len(), 32);
        assert_eq!(SigningSecret::parse(a.expose()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "SigningSecret(***)");
        // The signature depends on every part.
        let base = a.sign("id", 1, "{}").unwrap();
        assert_ne!(a.sign("id2", 1, "{}").unwrap(), base);
        assert_ne!(a.sign("id", 2, "{}").unwrap(), base);
        assert_ne!(a.sign("id", 1, "{ }").unwrap(), base);
        assert_ne!(b.sign("id", 1, "{}").unwrap(), base);
    }

    #[test]
    fn only_whsec_and_base64_is_a_signing_secret() {
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(SigningSecret::parse(bad).is_none(), "{bad:?}");
        }
        assert!(
            SigningSecret(String::from("whsec_%%"))
                .sign("i", 1, "b")
                .is_none()
        );
    }

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2-very-secret".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.to_string(), "***");
    }
}
