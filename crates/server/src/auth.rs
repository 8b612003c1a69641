//! Who may call the Query API: anyone (`permissive`, the default, as users of local emulators
//! expect) or only requests signed with SigV4 by a configured access key (`strict`).
//!
//! The check itself is `protocol::sigv4::verify`; this module holds the settings, keeps the
//! secrets out of `Debug` output, and adapts an axum request to the verifier.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use axum::http::request::Parts;
use protocol::ApiError;
use protocol::sigv4::{self, HttpRequest, Verified};

/// The service name every ElastiCache signature is scoped to.
const SERVICE: &str = "elasticache";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Any request is served, signed or not, with any key (the region still comes from the
    /// signature when there is one).
    #[default]
    Permissive,
    /// Every Query API request must carry a valid SigV4 signature of a configured access key.
    Strict,
}

/// One `AKID:SECRET` pair. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

impl FromStr for AccessKey {
    type Err = String;

    /// `AKID:SECRET`; the secret is everything after the first `:`. The error never repeats
    /// the input, which holds a secret.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, secret) = s.split_once(':').ok_or("an access key is written ACCESS_KEY_ID:SECRET_ACCESS_KEY")?;
        let (id, secret) = (id.trim(), secret.trim());
        if id.is_empty() || secret.is_empty() {
            return Err("an access key needs both an id and a secret (ACCESS_KEY_ID:SECRET_ACCESS_KEY)".into());
        }
        // The id travels in the credential scope, where '/' separates fields.
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("access key id '{id}' may only hold letters, digits, '_' and '-'"));
        }
        Ok(Self { id: id.to_string(), secret: secret.to_string() })
    }
}

/// The authentication settings of the Query API.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub access_keys: Vec<AccessKey>,
}

impl AuthSettings {
    /// Strict mode with these keys.
    pub fn strict(access_keys: Vec<AccessKey>) -> Self {
        Self { mode: AuthMode::Strict, access_keys }
    }

    /// Refuses settings that would lock every client out, or repeat an id with two secrets.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.mode == AuthMode::Strict && self.access_keys.is_empty() {
            anyhow::bail!("--auth strict needs at least one --access-key ACCESS_KEY_ID:SECRET_ACCESS_KEY");
        }
        let mut seen = BTreeMap::new();
        for key in &self.access_keys {
            if seen.insert(key.id.as_str(), key.secret.as_str()).is_some_and(|other| other != key.secret) {
                anyhow::bail!("access key id '{}' is given twice with different secrets", key.id);
            }
        }
        Ok(())
    }

    /// Says at start-up what the settings mean; an API reachable from other machines without
    /// signature checks is worth a warning.
    pub fn log_startup(&self, listening: SocketAddr) {
        let ids: Vec<&str> = self.access_keys.iter().map(|k| k.id.as_str()).collect();
        match self.mode {
            AuthMode::Strict => {
                tracing::info!(access_key_ids = ?ids, "strict auth: API requests must be signed (SigV4)")
            }
            AuthMode::Permissive => {
                if !ids.is_empty() {
                    tracing::info!("access keys are configured but auth is permissive: signatures are not checked");
                }
                if !listening.ip().to_canonical().is_loopback() {
                    tracing::warn!(
                        address = %listening,
                        "listening beyond loopback without --auth strict: API requests are not authenticated"
                    );
                }
            }
        }
    }

    /// Under strict auth, checks the signature of a Query API request and returns who signed
    /// it; under permissive auth, `Ok(None)`.
    pub fn check(&self, parts: &Parts, body: &[u8]) -> Result<Option<Verified>, ApiError> {
        if self.mode == AuthMode::Permissive {
            return Ok(None);
        }
        let mut headers: Vec<(&str, &str)> =
            parts.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
        // HTTP/2 carries the host in the URI (`:authority`), not in a header.
        if !parts.headers.contains_key(axum::http::header::HOST)
            && let Some(authority) = parts.uri.authority()
        {
            headers.push(("host", authority.as_str()));
        }
        let request = HttpRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &headers,
            body,
        };
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        let secret_for = |id: &str| self.access_keys.iter().find(|key| key.id == id).map(|key| key.secret.as_str());
        sigv4::verify(&request, SERVICE, now, secret_for).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_keys_parse_without_echoing_secrets() {
        let key: AccessKey = "AKID1:se:cr/et+".parse().expect("valid");
        assert_eq!((key.id.as_str(), key.secret.as_str()), ("AKID1", "se:cr/et+"));
        assert!(!format!("{key:?}").contains("se:cr"));
        for bad in ["nocolon-topsecret", ":topsecret", "AKID:", "AK/ID:topsecret"] {
            let err = bad.parse::<AccessKey>().unwrap_err();
            assert!(!err.contains("topsecret"), "{err}");
        }
    }

    #[test]
    fn strict_needs_a_key_and_one_secret_per_id() {
        assert!(AuthSettings::default().validate().is_ok());
        assert!(AuthSettings::strict(vec![]).validate().is_err());
        let key = |s: &str| s.parse::<AccessKey>().expect("valid");
        assert!(AuthSettings::strict(vec![key("A:1"), key("B:2"), key("A:1")]).validate().is_ok());
        assert!(AuthSettings::strict(vec![key("A:1"), key("A:2")]).validate().is_err());
    }
}
