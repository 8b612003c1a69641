//! Users (RBAC): CreateUser / ModifyUser / DeleteUser / DescribeUsers, and the built-in
//! `default` user every region has.
//!
//! Passwords are checked, hashed (SHA-256, what `ACL SETUSER … #<hash>` takes) and
//! forgotten: no response, log line, event or error message carries one.
//!
//! Statuses: a user needs no node work until its groups are attached to caches, so each
//! change is complete when the call returns. The call answers with AWS's transitional
//! status (`modifying`, `deleting`; CreateUser answers `active`, as AWS does) and the stored
//! user is `active` (or gone) at once.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use sha2::{Digest, Sha256};
use store::{EventRecord, Scope, StoreError, UserRecord, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::{Operations, access_string, internal, tags, updated};

/// The user (and user name) AWS creates in every region.
pub const DEFAULT_USER: &str = "default";
const DEFAULT_ACCESS_STRING: &str = "on ~* +@all";
/// AWS's quota of users per region.
const QUOTA: usize = 1000;
const MAX_ID_LEN: usize = 40;
const MAX_PASSWORDS: usize = 2;
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 16..=128;

pub const ACTIVE: &str = "active";
const MODIFYING: &str = "modifying";
const DELETING: &str = "deleting";

pub const PASSWORD: &str = "password";
pub const NO_PASSWORD: &str = "no-password";
pub const IAM: &str = "iam";

pub async fn seed_default(ops: &Operations, scope: &Scope) -> Result<(), ApiError> {
    let user = UserRecord {
        id: DEFAULT_USER.to_string(),
        name: DEFAULT_USER.to_string(),
        engine: "redis".to_string(),
        access_string: DEFAULT_ACCESS_STRING.to_string(),
        authentication: NO_PASSWORD.to_string(),
        password_hashes: Vec::new(),
        status: ACTIVE.to_string(),
        created_millis: now_millis(),
    };
    let arn = arn::build(scope, Kind::User, DEFAULT_USER);
    ops.store.create_user(scope, &user, &arn, &[], None, &[]).await.map_err(internal)
}

/// `redis` or `valkey`, in any case (Terraform sends `REDIS`); stored lowercase.
pub fn engine(value: &str) -> Result<String, ApiError> {
    let engine = value.to_ascii_lowercase();
    if engine == "redis" || engine == "valkey" {
        Ok(engine)
    } else {
        Err(ApiError::invalid_parameter_value(format!("Invalid engine {value}. The engine must be redis or valkey.")))
    }
}

/// The rule for user and user group ids: up to 40 letters, digits or hyphens, starting
/// with a letter, without a trailing hyphen or two in a row. Stored lowercase.
pub fn id(parameter: &str, value: &str) -> Result<String, ApiError> {
    let id = value.to_ascii_lowercase();
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(id)
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid {parameter}: {value}. It must contain 1 to {MAX_ID_LEN} alphanumeric characters or hyphens, begin with a letter, and must not end with a hyphen or contain two consecutive hyphens."
        )))
    }
}

/// Redis refuses user names with spaces or control characters in `ACL SETUSER`.
fn user_name(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid_parameter_value(
            "UserName must be at least one character long and must not contain spaces or control characters.",
        ));
    }
    Ok(())
}

/// Checks passwords as AWS does (1 or 2 of them; each 16–128 printable ASCII characters
/// other than space, `"`, `/` and `@`) and returns their SHA-256 hex digests.
fn hash_passwords(passwords: &[String]) -> Result<Vec<String>, ApiError> {
    if passwords.len() > MAX_PASSWORDS {
        return Err(crate::messages::too_many_passwords());
    }
    if passwords.is_empty() {
        return Err(crate::messages::password_type_without_password());
    }
    for password in passwords {
        if !PASSWORD_LEN.contains(&password.len()) {
            return Err(crate::messages::password_length());
        }
        if !password.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'/' | b'@')) {
            // The message must not repeat the password.
            return Err(ApiError::invalid_parameter_value(
                "Passwords must be printable ASCII characters and must not contain spaces, \", / or @.",
            ));
        }
    }
    Ok(passwords.iter().map(|p| hex(&Sha256::digest(p.as_bytes()))).collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a user authenticates, resolved from Passwords / NoPasswordRequired /
/// AuthenticationMode.
struct Authentication {
    kind: &'static str,
    hashes: Vec<String>,
}

/// Resolves the authentication a request asks for; `Ok(None)` when it says nothing about
/// it (ModifyUser keeps what the user has).
fn authentication(
    user_id: &str,
    user_name: &str,
    passwords: Option<Vec<String>>,
    no_password_required: Option<bool>,
    mode: Option<AuthenticationMode>,
) -> Result<Option<Authentication>, ApiError> {
    let passwords = passwords.filter(|p| !p.is_empty());
    let no_password = no_password_required == Some(true);
    let Some(mode) = mode else {
        return match (passwords, no_password) {
            (Some(_), true) => Err(crate::messages::passwords_not_allowed("no-password-required")),
            (Some(passwords), false) => {
                Ok(Some(Authentication { kind: PASSWORD, hashes: hash_passwords(&passwords)? }))
            }
            (None, true) => Ok(Some(Authentication { kind: NO_PASSWORD, hashes: Vec::new() })),
            (None, false) => Ok(None),
        };
    };
    let mode_passwords = mode.passwords.filter(|p| !p.is_empty());
    if mode_passwords.is_some() && passwords.is_some() {
        return Err(crate::messages::passwords_in_two_places());
    }
    let passwords = mode_passwords.or(passwords);
    match mode.r#type {
        Some(InputAuthenticationType::Password) => {
            if no_password {
                return Err(crate::messages::no_password_flag_with("password"));
            }
            let Some(passwords) = passwords else {
                return Err(crate::messages::password_type_without_password());
            };
            Ok(Some(Authentication { kind: PASSWORD, hashes: hash_passwords(&passwords)? }))
        }
        Some(InputAuthenticationType::NoPasswordRequired) => {
            if passwords.is_some() {
                return Err(crate::messages::passwords_not_allowed("no-password-required"));
            }
            Ok(Some(Authentication { kind: NO_PASSWORD, hashes: Vec::new() }))
        }
        Some(InputAuthenticationType::Iam) => {
            if no_password {
                return Err(crate::messages::no_password_flag_with("iam"));
            }
            if passwords.is_some() {
                return Err(crate::messages::passwords_not_allowed("iam"));
            }
            if user_id != user_name {
                return Err(ApiError::invalid_parameter_combination(
                    "User Id and User name must be same for authentication type: iam",
                ));
            }
            Ok(Some(Authentication { kind: IAM, hashes: Vec::new() }))
        }
        None => Err(ApiError::authentication_type_not_allowed("null")),
    }
}

/// Whether `user` may belong to a group of `group_engine`: a redis group holds redis users;
/// a valkey group holds valkey users and redis users that authenticate (password or IAM).
pub fn fits_group(group_engine: &str, user: &UserRecord) -> bool {
    match group_engine {
        "redis" => user.engine == "redis",
        _ => user.engine == "valkey" || user.authentication != NO_PASSWORD,
    }
}

pub fn engine_mismatch(group_id: &str, group_engine: &str, user_id: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!(
        "User {user_id} cannot belong to user group {group_id}: a {group_engine} user group holds {}.",
        if group_engine == "redis" {
            "only redis users"
        } else {
            "valkey users and redis users with password or IAM authentication"
        }
    ))
}

/// The oldest engine version that supports a user like this.
pub fn minimum_engine_version(engine: &str, authentication: &str) -> &'static str {
    match (engine, authentication) {
        ("valkey", _) => "7.2",
        (_, IAM) => "7.0",
        _ => "6.0",
    }
}

fn output(scope: &Scope, user: &store::User, status: Option<&str>) -> User {
    let u = &user.user;
    User {
        arn: Some(arn::build(scope, Kind::User, &u.id)),
        access_string: Some(u.access_string.clone()),
        authentication: Some(protocol::shapes::Authentication {
            // AWS shows a count for password users only (aws-cli's describe-users example).
            password_count: (u.authentication == PASSWORD).then_some(u.password_hashes.len() as i32),
            r#type: AuthenticationType::from_wire(&u.authentication),
        }),
        engine: Some(u.engine.clone()),
        minimum_engine_version: Some(minimum_engine_version(&u.engine, &u.authentication).to_string()),
        status: Some(status.unwrap_or(&u.status).to_string()),
        user_group_ids: Some(user.group_ids.clone()),
        user_id: Some(u.id.clone()),
        user_name: Some(u.name.clone()),
    }
}

fn not_found(id: &str) -> ApiError {
    Kind::User.not_found(id)
}

fn event(id: &str, message: String) -> EventRecord {
    EventRecord::new("user", id, message)
}

pub async fn create(ops: &Operations, ctx: &RequestContext, input: CreateUserMessage) -> Result<User, ApiError> {
    let scope = ops.scope(ctx).await?;
    let user_id = id("UserId", &input.user_id)?;
    user_name(&input.user_name)?;
    let engine = engine(&input.engine)?;
    // As AWS does: the authentication is checked before the access string.
    let auth = authentication(
        &user_id,
        &input.user_name,
        input.passwords,
        input.no_password_required,
        input.authentication_mode,
    )?
    .ok_or_else(|| {
        ApiError::invalid_parameter_value(
            "No password was provided: give Passwords, or set NoPasswordRequired to true, or give an AuthenticationMode.",
        )
    })?;
    access_string::validate(&input.access_string)?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let record = UserRecord {
        id: user_id.clone(),
        name: input.user_name,
        engine,
        access_string: input.access_string,
        authentication: auth.kind.to_string(),
        password_hashes: auth.hashes,
        status: ACTIVE.to_string(),
        created_millis: now_millis(),
    };
    let arn = arn::build(&scope, Kind::User, &user_id);
    let events = [event(&user_id, format!("User {user_id} has been created"))];
    ops.store.create_user(&scope, &record, &arn, &tags, Some(QUOTA), &events).await.map_err(|e| match e {
        StoreError::AlreadyExists => {
            ApiError::new(ErrorCode::UserAlreadyExistsFault, format!("User {user_id} already exists."))
        }
        StoreError::QuotaExceeded(quota) => ApiError::new(
            ErrorCode::UserQuotaExceededFault,
            format!("The maximum number of users ({quota}) has been reached."),
        ),
        e => internal(e),
    })?;
    tracing::info!(
        user = user_id,
        region = scope.region,
        engine = record.engine,
        authentication = record.authentication,
        "created user"
    );
    Ok(output(&scope, &store::User { user: record, group_ids: Vec::new() }, None))
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeUsersMessage,
) -> Result<DescribeUsersResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let mut users = match &input.user_id {
        Some(user_id) => {
            let user_id = user_id.to_ascii_lowercase();
            vec![ops.store.user(&scope, &user_id).await.map_err(internal)?.ok_or_else(|| not_found(&user_id))?]
        }
        None => ops.store.users(&scope).await.map_err(internal)?,
    };
    if let Some(engine) = &input.engine {
        users.retain(|u| u.user.engine.eq_ignore_ascii_case(engine));
    }
    for filter in input.filters.as_deref().unwrap_or_default() {
        if filter.values.is_empty() {
            return Err(ApiError::invalid_parameter_value(format!("Filter {} needs at least one value.", filter.name)));
        }
        let field: fn(&UserRecord) -> &str = match filter.name.as_str() {
            "user-id" => |u| &u.id,
            "user-name" => |u| &u.name,
            "engine" => |u| &u.engine,
            "status" => |u| &u.status,
            other => {
                return Err(ApiError::invalid_parameter_value(format!(
                    "Invalid filter name {other}. Valid names are user-id, user-name, engine and status."
                )));
            }
        };
        users.retain(|u| filter.values.iter().any(|v| v.eq_ignore_ascii_case(field(&u.user))));
    }
    let page = paginate(users, |u| u.user.id.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(DescribeUsersResult {
        marker: page.marker,
        users: Some(page.items.iter().map(|u| output(&scope, u, None)).collect()),
    })
}

pub async fn modify(ops: &Operations, ctx: &RequestContext, input: ModifyUserMessage) -> Result<User, ApiError> {
    let scope = ops.scope(ctx).await?;
    let user_id = input.user_id.to_ascii_lowercase();
    if user_id == DEFAULT_USER {
        return Err(ApiError::invalid_parameter_value("The default user cannot be modified."));
    }
    if input.access_string.is_some() && input.append_access_string.is_some() {
        return Err(ApiError::invalid_parameter_combination(
            "AccessString and AppendAccessString cannot both be provided.",
        ));
    }
    for rules in [&input.access_string, &input.append_access_string].into_iter().flatten() {
        access_string::validate(rules)?;
    }
    let engine = input.engine.as_deref().map(engine).transpose()?;
    let asks_for_auth =
        input.passwords.is_some() || input.no_password_required.is_some() || input.authentication_mode.is_some();
    if input.access_string.is_none() && input.append_access_string.is_none() && engine.is_none() && !asks_for_auth {
        return Err(ApiError::invalid_parameter_combination("No modifications were requested."));
    }
    let (passwords, no_password_required, mode) =
        (input.passwords, input.no_password_required, input.authentication_mode);
    let result = ops
        .store
        .update_user(&scope, &user_id, |user, groups, _| {
            if user.status != ACTIVE {
                return Err(ApiError::new(
                    ErrorCode::InvalidUserStateFault,
                    format!("User {} is not in active state.", user.id),
                ));
            }
            if asks_for_auth {
                match authentication(&user.id, &user.name, passwords, no_password_required, mode)? {
                    Some(auth) => {
                        user.authentication = auth.kind.to_string();
                        user.password_hashes = auth.hashes;
                    }
                    // NoPasswordRequired=false alone: the user must have passwords already.
                    None if user.authentication == NO_PASSWORD => {
                        return Err(ApiError::invalid_parameter_value(
                            "Passwords must be provided when NoPasswordRequired is false.",
                        ));
                    }
                    None => {}
                }
            }
            if let Some(rules) = input.access_string {
                user.access_string = rules;
            }
            if let Some(rules) = input.append_access_string {
                user.access_string = format!("{} {rules}", user.access_string);
            }
            if let Some(engine) = engine {
                user.engine = engine;
            }
            for group in groups {
                if !fits_group(&group.group.engine, user) {
                    return Err(engine_mismatch(&group.group.id, &group.group.engine, &user.id));
                }
            }
            Ok(vec![event(&user.id, format!("User {} has been modified", user.id))])
        })
        .await;
    let user = updated(result, || not_found(&user_id))?;
    tracing::info!(user = user_id, from = ACTIVE, to = MODIFYING, "modifying user");
    tracing::info!(user = user_id, from = MODIFYING, to = ACTIVE, "modified user");
    // Nodes whose ACL holds this user take the change.
    ops.reconcile_everything();
    Ok(output(&scope, &user, Some(MODIFYING)))
}

pub async fn delete(ops: &Operations, ctx: &RequestContext, input: DeleteUserMessage) -> Result<User, ApiError> {
    let scope = ops.scope(ctx).await?;
    let user_id = input.user_id.to_ascii_lowercase();
    if user_id == DEFAULT_USER {
        return Err(ApiError::invalid_parameter_value("The default user cannot be deleted."));
    }
    let arn = arn::build(&scope, Kind::User, &user_id);
    let result = ops
        .store
        .delete_user(&scope, &user_id, &arn, |user| {
            if user.user.status != ACTIVE {
                return Err(ApiError::new(
                    ErrorCode::InvalidUserStateFault,
                    format!("User {} is not in active state.", user.user.id),
                ));
            }
            // Every group needs a user named default; this one cannot leave them.
            if user.user.name == DEFAULT_USER && !user.group_ids.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::DefaultUserAssociatedToUserGroupFault,
                    format!(
                        "User {} is the default user of user group(s) {} and cannot be deleted.",
                        user.user.id,
                        user.group_ids.join(", ")
                    ),
                ));
            }
            Ok(vec![event(&user.user.id, format!("User {} has been deleted", user.user.id))])
        })
        .await;
    let user = updated(result, || not_found(&user_id))?;
    tracing::info!(user = user_id, from = ACTIVE, to = DELETING, groups = ?user.group_ids, "deleted user (removed from its groups)");
    ops.reconcile_everything();
    Ok(output(&scope, &user, Some(DELETING)))
}

pub async fn exists(ops: &Operations, scope: &Scope, id: &str) -> Result<bool, ApiError> {
    Ok(ops.store.user(scope, id).await.map_err(internal)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn ids() {
        for good in ["a", "app-user-1", "APP", &"a".repeat(40)] {
            assert!(id("UserId", good).is_ok(), "{good}");
        }
        assert_eq!(id("UserId", "App-User").ok().as_deref(), Some("app-user"));
        for bad in ["", "1abc", "a--b", "abc-", "a_b", "a.b", &"a".repeat(41)] {
            assert_eq!(id("UserId", bad).unwrap_err().code, "InvalidParameterValue", "{bad}");
        }
    }

    #[test]
    fn passwords_are_checked_and_hashed() {
        let hashes = hash_passwords(&["0123456789abcdef".to_string()]).expect("valid");
        // sha256("0123456789abcdef")
        assert_eq!(hashes, ["9f9f5111f7b27a781f1f1ddde5ebc2dd2b796bfc7365c9c28b548e564176929f"]);
        for bad in [
            "short".to_string(),
            "a".repeat(129),
            "with space 0123456789".to_string(),
            "with\"quote0123456789".to_string(),
            "with/slash0123456789".to_string(),
            "with@at0123456789abc".to_string(),
            "non-ascii-é-0123456789".to_string(),
        ] {
            let error = hash_passwords(std::slice::from_ref(&bad)).unwrap_err();
            assert_eq!(error.code, "InvalidParameterValue");
            assert!(!error.message.contains(&bad), "{}", error.message);
        }
        assert!(hash_passwords(&[]).is_err());
        assert!(hash_passwords(&["a".repeat(16), "b".repeat(16), "c".repeat(16)]).is_err());
        assert!(hash_passwords(&["a".repeat(16), "b".repeat(128)]).is_ok());
    }

    #[test]
    fn authentication_modes() {
        let pw = strings(&["0123456789abcdef"]);
        let mode = |t, p| Some(AuthenticationMode { r#type: Some(t), passwords: p });
        let kind = |r: Result<Option<Authentication>, ApiError>| r.map(|a| a.map(|a| a.kind)).map_err(|e| e.code);
        assert_eq!(kind(authentication("u", "u", pw.clone(), Some(false), None)), Ok(Some(PASSWORD)));
        assert_eq!(kind(authentication("u", "u", None, Some(true), None)), Ok(Some(NO_PASSWORD)));
        assert_eq!(kind(authentication("u", "u", None, None, None)), Ok(None));
        assert_eq!(kind(authentication("u", "u", pw.clone(), Some(true), None)), Err("InvalidParameterCombination"));
        assert_eq!(
            kind(authentication("u", "u", None, None, mode(InputAuthenticationType::Password, pw.clone()))),
            Ok(Some(PASSWORD))
        );
        assert_eq!(
            kind(authentication("u", "u", None, None, mode(InputAuthenticationType::Password, None))),
            Err("InvalidParameterCombination")
        );
        assert_eq!(
            kind(authentication("u", "u", pw.clone(), None, mode(InputAuthenticationType::Password, pw.clone()))),
            Err("InvalidParameterCombination")
        );
        assert_eq!(kind(authentication("u", "u", None, None, mode(InputAuthenticationType::Iam, None))), Ok(Some(IAM)));
        assert_eq!(
            kind(authentication("u", "v", None, None, mode(InputAuthenticationType::Iam, None))),
            Err("InvalidParameterCombination")
        );
        assert_eq!(
            kind(authentication("u", "u", None, None, mode(InputAuthenticationType::NoPasswordRequired, pw))),
            Err("InvalidParameterCombination")
        );
    }
}
