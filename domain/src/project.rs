//! Project codes: 1 to 64 ASCII letters, digits, `_` and `-`, case sensitive.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::FieldError;

pub const MAX_PROJECT_CODE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectCode(String);

impl ProjectCode {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > MAX_PROJECT_CODE_LEN {
            return Err(FieldError::new(
                "project",
                format!("must be 1 to {MAX_PROJECT_CODE_LEN} characters"),
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(FieldError::new(
                "project",
                "may contain only ASCII letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProjectCode {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ProjectCode> for String {
    fn from(value: ProjectCode) -> Self {
        value.0
    }
}

impl fmt::Display for ProjectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_qase_style_codes() {
        for ok in ["DEMO", "a", "my-project_2", &"X".repeat(64)] {
            assert_eq!(
                ProjectCode::parse(ok).map(|c| c.to_string()).as_deref(),
                Ok(ok)
            );
        }
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        for bad in ["", &"X".repeat(65), "DE MO", "a/b", "é", "a.b", "PROJECT#"] {
            let err = ProjectCode::parse(bad).unwrap_err();
            assert_eq!(err.field, "project", "{bad:?}");
        }
    }

    #[test]
    fn codes_are_case_sensitive() {
        assert_ne!(ProjectCode::parse("demo"), ProjectCode::parse("DEMO"));
    }
}
