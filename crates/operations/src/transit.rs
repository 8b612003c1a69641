//! Transit encryption (TLS) and AUTH tokens of replication groups and Redis cache clusters:
//! AWS's validation on create, the ModifyReplicationGroup transitions (TLS migration
//! `preferred` ⇄ `required`, token ROTATE / SET / DELETE), and the Describe fields.
//!
//! Tokens are secrets: no error message, event or log line here names one.

use protocol::ApiError;
use protocol::shapes::{AuthTokenUpdateStatus, AuthTokenUpdateStrategyType, TransitEncryptionMode};
use store::{TransitSecurity, now_millis};

pub use model::status::transit::{PREFERRED, REQUIRED};

/// AWS's rule for an AUTH token (the API reference's): 16–128 printable ASCII characters,
/// none of `/`, `"`, `@`, `%`, and no spaces. The message never repeats the token.
pub fn validate_token(token: &str) -> Result<(), ApiError> {
    let length = token.chars().count();
    if !(16..=128).contains(&length) {
        return Err(ApiError::invalid_parameter_value(
            "Invalid AuthToken provided. The AUTH token must be between 16 and 128 characters long.",
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '"' | '@' | '%')) {
        return Err(ApiError::invalid_parameter_value(
            "Invalid AuthToken provided. The AUTH token must contain only printable ASCII characters, \
             without spaces and without '/', '\"', '@' or '%'.",
        ));
    }
    Ok(())
}

/// The security settings a new group or cluster starts with. (Memcached takes encryption in
/// transit only, from version 1.6.12 on, checked by CreateCacheCluster.)
pub fn on_create(
    engine: &str,
    transit_encryption_enabled: Option<bool>,
    mode: Option<TransitEncryptionMode>,
    auth_token: Option<&str>,
) -> Result<TransitSecurity, ApiError> {
    let enabled = transit_encryption_enabled == Some(true);
    if auth_token.is_some() && !enabled {
        return Err(ApiError::invalid_parameter_combination(
            "The AUTH token is only supported when encryption-in-transit is enabled.",
        ));
    }
    if mode.is_some() && !enabled {
        return Err(ApiError::invalid_parameter_combination(
            "TransitEncryptionMode requires TransitEncryptionEnabled to be true.",
        ));
    }
    if engine == "memcached" && (auth_token.is_some() || mode.is_some()) {
        return Err(ApiError::invalid_parameter_combination(
            "AuthToken and TransitEncryptionMode are supported for Valkey and Redis OSS only.",
        ));
    }
    if let Some(token) = auth_token {
        validate_token(token)?;
    }
    Ok(TransitSecurity {
        transit_encryption: enabled,
        // A new cluster with TLS requires it unless told otherwise (AWS's default).
        transit_mode: enabled.then(|| mode.map_or(REQUIRED, |m| m.as_str()).to_string()),
        auth_tokens: auth_token.map(|t| vec![t.to_string()]).unwrap_or_default(),
        auth_token_last_modified_millis: auth_token.map(|_| now_millis()),
        auth_token_status: None,
    })
}

/// What ModifyReplicationGroup asks of the security settings.
#[derive(Clone, Copy)]
pub struct Change<'a> {
    pub transit_encryption_enabled: Option<bool>,
    pub mode: Option<TransitEncryptionMode>,
    pub auth_token: Option<&'a str>,
    pub strategy: Option<AuthTokenUpdateStrategyType>,
    /// UserGroupIdsToAdd given: the group moves to RBAC (the only case DELETE is allowed).
    pub to_rbac: bool,
}

impl Change<'_> {
    pub fn is_empty(&self) -> bool {
        self.transit_encryption_enabled.is_none()
            && self.mode.is_none()
            && self.auth_token.is_none()
            && self.strategy.is_none()
    }
}

/// Checks that the token and strategy parts are well formed, before any state is read.
pub fn check_change(change: &Change) -> Result<(), ApiError> {
    if let Some(token) = change.auth_token {
        validate_token(token)?;
    }
    match (change.strategy, change.auth_token) {
        (Some(AuthTokenUpdateStrategyType::Delete), Some(_)) => Err(ApiError::invalid_parameter_combination(
            "AuthToken cannot be specified with AuthTokenUpdateStrategy DELETE.",
        )),
        (Some(AuthTokenUpdateStrategyType::Delete), None) => Ok(()),
        (Some(_), None) => {
            Err(ApiError::invalid_parameter_combination("AuthTokenUpdateStrategy requires an AuthToken."))
        }
        _ => Ok(()),
    }
}

/// Applies `change` to `current`; returns whether anything changed and whether the nodes
/// must restart (their TCP port changes between plaintext and TLS).
pub fn apply(current: &mut TransitSecurity, change: &Change) -> Result<bool, ApiError> {
    let before = current.clone();
    let now_mode = current.mode().map(str::to_string);
    let wanted_enabled = change.transit_encryption_enabled.unwrap_or(current.transit_encryption);
    match (now_mode.as_deref(), wanted_enabled, change.mode) {
        // Turning TLS on is the first step of AWS's migration: `preferred` only.
        (None, true, Some(TransitEncryptionMode::Preferred)) => {
            current.transit_encryption = true;
            current.transit_mode = Some(PREFERRED.to_string());
        }
        (None, true, _) => {
            return Err(ApiError::invalid_parameter_combination(
                "TransitEncryptionMode must be set to preferred when enabling TransitEncryptionEnabled \
                 on an existing replication group.",
            ));
        }
        (None, false, Some(_)) => {
            return Err(ApiError::invalid_parameter_combination(
                "TransitEncryptionMode requires TransitEncryptionEnabled to be true.",
            ));
        }
        (None, false, None) => {}
        (Some(_), true, None) => {}
        (Some(_), true, Some(mode)) => current.transit_mode = Some(mode.as_str().to_string()),
        // Turning TLS off goes back through `preferred`, and takes the token with it.
        (Some(PREFERRED), false, None | Some(TransitEncryptionMode::Preferred)) => {
            if !current.auth_tokens.is_empty() && change.strategy != Some(AuthTokenUpdateStrategyType::Delete) {
                return Err(ApiError::invalid_parameter_combination(
                    "Encryption in transit cannot be disabled while an AUTH token is enabled.",
                ));
            }
            current.transit_encryption = false;
            current.transit_mode = None;
        }
        (Some(_), false, _) => {
            return Err(ApiError::invalid_parameter_combination(
                "TransitEncryptionMode must be preferred before TransitEncryptionEnabled can be set to false.",
            ));
        }
    }

    match (change.strategy, change.auth_token) {
        (Some(AuthTokenUpdateStrategyType::Delete), _) => {
            if current.auth_tokens.is_empty() {
                return Err(ApiError::invalid_parameter_combination("The replication group has no AUTH token."));
            }
            if !change.to_rbac {
                return Err(ApiError::invalid_parameter_combination(
                    "AuthTokenUpdateStrategy DELETE is only allowed when migrating to role-based access control \
                     (UserGroupIdsToAdd).",
                ));
            }
            current.auth_tokens.clear();
            current.auth_token_last_modified_millis = Some(now_millis());
            current.auth_token_status = Some(AuthTokenUpdateStatus::Setting.as_str().to_string());
        }
        (strategy, Some(token)) => {
            if !current.transit_encryption {
                return Err(ApiError::invalid_parameter_combination(
                    "The AUTH token is only supported when encryption-in-transit is enabled.",
                ));
            }
            if strategy == Some(AuthTokenUpdateStrategyType::Set) {
                if current.auth_tokens.is_empty() {
                    return Err(ApiError::invalid_parameter_combination(
                        "AuthTokenUpdateStrategy SET is only allowed after ROTATE: the replication group has no \
                         AUTH token.",
                    ));
                }
                current.auth_tokens = vec![token.to_string()];
                current.auth_token_status = Some(AuthTokenUpdateStatus::Setting.as_str().to_string());
            } else {
                // ROTATE (the default): the new token is added; the previous one keeps working.
                let previous = current.auth_tokens.first().filter(|t| *t != token).cloned();
                current.auth_tokens = std::iter::once(token.to_string()).chain(previous).collect();
                current.auth_token_status = Some(AuthTokenUpdateStatus::Rotating.as_str().to_string());
            }
            current.auth_token_last_modified_millis = Some(now_millis());
        }
        (_, None) => {}
    }
    Ok(*current != before)
}

/// Describe's `TransitEncryptionMode`.
pub fn mode_output(security: &TransitSecurity) -> Option<TransitEncryptionMode> {
    match security.mode() {
        Some(PREFERRED) => Some(TransitEncryptionMode::Preferred),
        Some(_) => Some(TransitEncryptionMode::Required),
        None => None,
    }
}

/// Describe's `PendingModifiedValues.AuthTokenStatus`.
pub fn status_output(security: &TransitSecurity) -> Option<AuthTokenUpdateStatus> {
    match security.auth_token_status.as_deref() {
        Some("ROTATING") => Some(AuthTokenUpdateStatus::Rotating),
        Some("SETTING") => Some(AuthTokenUpdateStatus::Setting),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert!(validate_token("0123456789abcdef").is_ok());
        assert!(validate_token("Abc!&#$^<>-*()_+=0123").is_ok());
        assert!(validate_token("short").is_err());
        assert!(validate_token(&"a".repeat(129)).is_err());
        for bad in
            ["0123456789abcde/", "0123456789abcde\"", "0123456789abcde@", "0123456789abcde%", "0123456789 abcdef"]
        {
            let error = validate_token(bad).unwrap_err();
            assert!(!error.to_string().contains(bad));
        }
    }

    fn change(token: Option<&str>, strategy: Option<AuthTokenUpdateStrategyType>) -> Change<'_> {
        Change { transit_encryption_enabled: None, mode: None, auth_token: token, strategy, to_rbac: false }
    }

    #[test]
    fn rotate_then_set() {
        let mut s = on_create("redis", Some(true), None, Some("first-token-0123456")).unwrap();
        assert_eq!(s.mode(), Some(REQUIRED));
        assert!(apply(&mut s, &change(Some("second-token-012345"), None)).unwrap());
        assert_eq!(s.auth_tokens, ["second-token-012345", "first-token-0123456"]);
        assert!(apply(&mut s, &change(Some("second-token-012345"), Some(AuthTokenUpdateStrategyType::Set))).unwrap());
        assert_eq!(s.auth_tokens, ["second-token-012345"]);
        assert!(apply(&mut s, &change(None, Some(AuthTokenUpdateStrategyType::Delete))).is_err());
    }

    #[test]
    fn migration_path() {
        let mut s = TransitSecurity::default();
        let mut c = change(None, None);
        c.transit_encryption_enabled = Some(true);
        c.mode = Some(TransitEncryptionMode::Required);
        assert!(apply(&mut s.clone(), &c).is_err());
        c.mode = Some(TransitEncryptionMode::Preferred);
        assert!(apply(&mut s, &c).unwrap());
        c.mode = Some(TransitEncryptionMode::Required);
        assert!(apply(&mut s, &c).unwrap());
        assert_eq!(s.mode(), Some(REQUIRED));
        let mut off = change(None, None);
        off.transit_encryption_enabled = Some(false);
        assert!(apply(&mut s.clone(), &off).is_err());
        c.mode = Some(TransitEncryptionMode::Preferred);
        assert!(apply(&mut s, &c).unwrap());
        assert!(apply(&mut s, &off).unwrap());
        assert_eq!(s.mode(), None);
    }
}
