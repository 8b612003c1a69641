//! Shapes AWS checks in several resource families: identifiers, names, windows, keys.

use protocol::ApiError;

/// AWS's identifier rule for parameter, subnet and security group names: 1–255 ASCII
/// letters, digits or hyphens; starts with a letter; no trailing hyphen and no `--`.
pub fn group_name(parameter: &str, name: &str) -> Result<(), ApiError> {
    if is_identifier(name, 255) {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid {parameter}: {name}. It must contain 1 to 255 alphanumeric characters or hyphens, begin with a letter, and must not end with a hyphen or contain two consecutive hyphens."
        )))
    }
}

/// AWS's identifier shape: 1–`max_len` ASCII letters, digits or hyphens, starting with a
/// letter, no trailing hyphen and no `--`.
fn is_identifier(name: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// AWS's rule for cluster and replication group ids: 1–`max_len` letters, digits or
/// hyphens, starting with a letter, no trailing hyphen, no `--`. Stored lowercase.
pub fn resource_id(parameter: &str, id: &str, max_len: usize) -> Result<String, ApiError> {
    if is_identifier(id, max_len) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid {parameter}: {id}. It must contain 1 to {max_len} alphanumeric characters or hyphens, begin with a letter, and must not end with a hyphen or contain two consecutive hyphens."
        )))
    }
}

/// `ddd:hh24:mi-ddd:hh24:mi`, lowercased as AWS stores it.
pub fn maintenance_window(window: &str) -> Result<String, ApiError> {
    let window = window.to_ascii_lowercase();
    let part_ok = |p: &str| {
        let mut it = p.split(':');
        let (Some(day), Some(h), Some(m), None) = (it.next(), it.next(), it.next(), it.next()) else { return false };
        ["sun", "mon", "tue", "wed", "thu", "fri", "sat"].contains(&day)
            && h.len() == 2
            && m.len() == 2
            && h.parse::<u8>().is_ok_and(|h| h < 24)
            && m.parse::<u8>().is_ok_and(|m| m < 60)
    };
    match window.split_once('-') {
        Some((a, b)) if part_ok(a) && part_ok(b) => Ok(window),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid PreferredMaintenanceWindow: {window}. The format is ddd:hh24:mi-ddd:hh24:mi."
        ))),
    }
}

/// `hh24:mi-hh24:mi`.
pub fn snapshot_window(window: &str) -> Result<String, ApiError> {
    let time_ok = |t: &str| {
        t.split_once(':').is_some_and(|(h, m)| {
            h.len() == 2
                && m.len() == 2
                && h.parse::<u8>().is_ok_and(|h| h < 24)
                && m.parse::<u8>().is_ok_and(|m| m < 60)
        })
    };
    match window.split_once('-') {
        Some((a, b)) if time_ok(a) && time_ok(b) => Ok(window.to_string()),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid SnapshotWindow: {window}. The format is hh24:mi-hh24:mi."
        ))),
    }
}

/// AWS documents 255 characters for ReplicationGroupDescription (API reference,
/// ModifyReplicationGroup); the other descriptions are held to the same.
const MAX_DESCRIPTION_CHARS: usize = 255;

/// A description that must be present: not blank, and not too long.
pub fn description(parameter: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid_parameter_value(format!(
            "The parameter {parameter} must be provided and must not be blank."
        )));
    }
    description_length(parameter, text)
}

/// A description no longer than AWS takes.
pub fn description_length(parameter: &str, text: &str) -> Result<(), ApiError> {
    let length = text.chars().count();
    if length > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid_parameter_value(format!(
            "The parameter {parameter} is {length} characters long; the maximum is {MAX_DESCRIPTION_CHARS}."
        )));
    }
    Ok(())
}

/// An id another AWS service hands out (`subnet-…`, `sg-…`): the prefix, then 1–64 letters,
/// digits, hyphens or underscores. Anything of that shape is taken, ids a user made up or
/// another local emulator (moto, LocalStack) issued included: there is no VPC here to ask.
pub fn is_foreign_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        (1..=64).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// An Outpost ARN (`arn:aws:outposts:<region>:<account>:outpost/op-…`), checked for shape
/// only: there is no Outposts service here to ask.
pub fn outpost_arn(arn: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", partition, "outposts", region, account, resource]
        if partition.starts_with("aws")
            && !region.is_empty()
            && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
            && resource.strip_prefix("outpost/").is_some_and(|id| is_foreign_id("op-", id)));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid PreferredOutpostArn: {arn}. Give the ARN of an Outpost."
        )))
    }
}

/// An SNS topic ARN (`arn:aws:sns:<region>:<account>:<name>`, the name 1–256 letters,
/// digits, hyphens or underscores, as SNS allows). The topic itself is not looked up: the
/// emulator sends no notifications.
pub fn topic_arn(arn: Option<&str>) -> Result<(), ApiError> {
    let Some(arn) = arn else { return Ok(()) };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", partition, "sns", region, account, name]
        if partition.starts_with("aws")
            && !region.is_empty()
            && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
            && (1..=256).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid NotificationTopicArn: {arn}. Give the ARN of an SNS topic."
        )))
    }
}

/// A KMS key as KMS names one: a key id (a UUID, or `mrk-` and 32 hex digits for a
/// multi-Region key), an alias (`alias/<name>`), or the ARN of either. Returned as given:
/// AWS shows it back, and Terraform compares it with what it sent. The key itself is not
/// looked up (the emulator has no KMS).
pub fn kms_key_id(value: &str) -> Result<String, ApiError> {
    let is_key_id = |id: &str| {
        let uuid = id.len() == 36
            && id
                .char_indices()
                .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
        let mrk = id.strip_prefix("mrk-").is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()));
        uuid || mrk
    };
    let is_alias = |alias: &str| {
        alias.strip_prefix("alias/").is_some_and(|name| {
            (1..=250).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_-".contains(c))
        })
    };
    let is_arn = |arn: &str| {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        matches!(parts.as_slice(), ["arn", partition, "kms", region, account, resource]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())
                && (resource.strip_prefix("key/").is_some_and(is_key_id) || is_alias(resource)))
    };
    if is_key_id(value) || is_alias(value) || is_arn(value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::new(
            protocol::ErrorCode::InvalidKMSKeyFault,
            format!("Invalid KmsKeyId: {value}. Give a KMS key id, key ARN, alias name (alias/...) or alias ARN."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for good in ["a", "my-group-1", &"a".repeat(255)] {
            assert!(group_name("X", good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "a--b", "abc-", "a_b", "default.redis7", &"a".repeat(256)] {
            assert!(group_name("X", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kms_key_ids() {
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "alias/app-cache",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/app/cache_1",
            "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert_eq!(kms_key_id(good).ok().as_deref(), Some(good), "{good}");
        }
        for bad in [
            "",
            "my-key",
            "alias/",
            "alias/has space",
            "1234abcd-12ab-34cd-56ef-1234567890a",
            "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/nope",
        ] {
            assert!(kms_key_id(bad).is_err(), "{bad}");
        }
    }
}
