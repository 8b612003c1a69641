//! Naming rules shared by several resource families.

use protocol::ApiError;

/// AWS's identifier rule for parameter, subnet and security group names: 1–255 ASCII
/// letters, digits or hyphens; starts with a letter; no trailing hyphen and no `--`.
pub fn group_name(parameter: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter_value(format!(
            "Invalid {parameter}: {name}. It must contain 1 to 255 alphanumeric characters or hyphens, begin with a letter, and must not end with a hyphen or contain two consecutive hyphens."
        )))
    }
}

/// A description must be present and not blank.
pub fn description(parameter: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::invalid_parameter_value(format!(
            "The parameter {parameter} must be provided and must not be blank."
        )));
    }
    Ok(())
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
}
