//! Secrets (access tokens, the API secret): never printed whole.

use serde::Deserialize;

/// A secret string (access tokens): never printed whole.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub(super) String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `abcd…(32 chars)`-style redaction: the first 4 characters at most.
    pub fn redacted(&self) -> String {
        if self.0.is_empty() {
            return "(none)".to_owned();
        }
        let head: String = self
            .0
            .chars()
            .take(if self.0.len() >= 12 { 4 } else { 0 })
            .collect();
        format!("{head}…({} chars)", self.0.chars().count())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}
