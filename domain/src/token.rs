//! API tokens (`docs/ARCHITECTURE.md`, "Tokens"). A token is shown once, when minted;
//! only its SHA-256 is stored. Its id is derived from that hash, so a lookup
//! is one key read and revoking needs no secondary index.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every token this service mints starts with this, so leaked tokens are
/// recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "qwh_";
/// URL-safe base64 of 32 random bytes, unpadded, after the prefix.
const MINTED_RANDOM_CHARS: usize = 43;

/// A bearer token in clear text: exists only between minting and the 201
/// response, and while a request is being authenticated.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

/// The randomness source failed; nothing was minted.
#[derive(Debug, thiserror::Error)]
#[error("could not gather randomness for a token")]
pub struct RandomnessUnavailable(#[source] getrandom::Error);

impl RandomnessUnavailable {
    pub(crate) fn new(err: getrandom::Error) -> Self {
        Self(err)
    }
}

impl ApiToken {
    /// A new token: 256 random bits, URL-safe.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomnessUnavailable)?;
        Ok(Self(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// Whether `raw` has the shape of a token this service mints: the prefix,
    /// then 43 URL-safe base64 characters (256 bits). Anything else cannot be
    /// a project token, and is refused without a storage read.
    pub fn could_be_minted(raw: &str) -> bool {
        raw.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
            rest.len() == MINTED_RANDOM_CHARS
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }

    /// Wraps a presented token for hashing.
    pub fn presented(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// SHA-256 of a token: what is stored, and what requests are compared by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The public id of the token: the first 96 bits of its hash, in hex.
    pub fn id(&self) -> TokenId {
        TokenId(self.to_hex()[..24].to_owned())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.id())
    }
}

/// The public name of a token, used to revoke it. Reveals nothing of the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Accepts exactly the shape [`TokenHash::id`] produces.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 24 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A minted token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub project: super::ProjectCode,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub created_at: super::Timestamp,
}

impl TokenRecord {
    pub fn new(hash: &TokenHash, project: super::ProjectCode, now: super::Timestamp) -> Self {
        Self {
            id: hash.id(),
            project,
            token_hash: hash.to_hex(),
            created_at: now,
        }
    }

    /// Whether `hash` is the hash this record was made from.
    pub fn matches(&self, hash: &TokenHash) -> bool {
        self.token_hash == hash.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shape_of_a_minted_token_could_be_one() {
        let minted = ApiToken::generate().unwrap();
        assert!(ApiToken::could_be_minted(minted.expose()));
        let random = "A".repeat(43);
        assert!(ApiToken::could_be_minted(&format!("qwh_{random}")));
        assert!(ApiToken::could_be_minted(&format!(
            "qwh_{}-_",
            "z".repeat(41)
        )));
        for not in [
            String::new(),
            "qwh_".to_owned(),
            format!("qwh_{}", "A".repeat(42)),
            format!("qwh_{}", "A".repeat(44)),
            format!("qwx_{random}"),
            format!("QWH_{random}"),
            format!("{random}qwh_"),
            format!("qwh_{}+", "A".repeat(42)),
            format!("qwh_{}=", "A".repeat(42)),
            format!("qwh_{}é", "A".repeat(41)),
        ] {
            assert!(!ApiToken::could_be_minted(&not), "{not:?}");
        }
    }

    #[test]
    fn a_record_matches_only_the_token_it_was_made_from() {
        let token = ApiToken::presented("project-token-aaaaaaaaaaaaaaaa");
        let record = TokenRecord::new(
            &token.hash(),
            crate::ProjectCode::parse("P").unwrap(),
            crate::Timestamp::now(),
        );
        assert!(record.matches(&token.hash()));
        let other = ApiToken::presented("project-token-bbbbbbbbbbbbbbbb");
        assert!(!record.matches(&other.hash()));
    }

    #[test]
    fn formatting_shows_ids_never_tokens() {
        let token = ApiToken::presented("secret-token-value-0123456789");
        let hash = token.hash();
        let id = hash.id();
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
        assert_eq!(format!("{hash:?}"), format!("TokenHash({id})"));
        assert!(
            !format!("{hash:?}").contains(&hash.to_hex()[24..]),
            "only the id part of the hash"
        );
        assert_eq!(id.to_string(), id.as_str());
        assert_eq!(id.to_string().len(), 24);
        assert_eq!(id.to_string(), hash.to_hex()[..24]);
    }

    #[test]
    fn generated_tokens_are_distinct_prefixed_and_long() {
        let a = ApiToken::generate().unwrap();
        let b = ApiToken::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
    }

    #[test]
    fn hash_is_sha256_and_id_is_its_prefix() {
        let hash = ApiToken::presented("abc").hash();
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash.id().as_str(), "ba7816bf8f01cfea414140de");
        assert_eq!(TokenId::parse("ba7816bf8f01cfea414140de"), Some(hash.id()));
    }

    #[test]
    fn token_id_parse_rejects_other_shapes() {
        for bad in [
            "",
            "BA7816BF8F01CFEA414140DE",
            "ba7816bf8f01cfea414140d",
            "zz7816bf8f01cfea414140de",
        ] {
            assert_eq!(TokenId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::presented("qwh_supersecret");
        assert!(!format!("{token:?}").contains("supersecret"));
        assert!(!format!("{:?}", token.hash()).contains("supersecret"));
    }
}
