//! RBAC access strings: Redis ACL rules, as ElastiCache accepts them.
//!
//! Everything `ACL SETUSER` takes about state, keys, channels and commands is accepted,
//! selectors (`(...)`) included. Password rules (`>`, `<`, `#`, `!`, `nopass`, `resetpass`,
//! and `reset`, which implies `resetpass`) are refused, as on AWS: passwords are set with
//! `Passwords` / `AuthenticationMode`. Error messages never repeat a password rule, since
//! it would carry a secret.

use protocol::ApiError;

/// Redis's ACL categories (`ACL CAT`).
const CATEGORIES: [&str; 22] = [
    "all",
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

fn invalid(detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_parameter_value(format!("Invalid access string: {detail}"))
}

/// Checks an access string; the string is stored (and echoed) as given.
pub fn validate(access_string: &str) -> Result<(), ApiError> {
    if access_string.trim().is_empty() {
        return Err(ApiError::invalid_parameter_value("AccessString must not be blank."));
    }
    let mut tokens = access_string.split_whitespace();
    while let Some(token) = tokens.next() {
        if let Some(first) = token.strip_prefix('(') {
            // A selector runs to the token that closes it.
            let mut inner = vec![first];
            let mut closed = false;
            let mut last = first;
            loop {
                if let Some(body) = last.strip_suffix(')') {
                    if let Some(end) = inner.last_mut() {
                        *end = body;
                    }
                    closed = true;
                    break;
                }
                match tokens.next() {
                    Some(next) => {
                        inner.push(next);
                        last = next;
                    }
                    None => break,
                }
            }
            if !closed {
                return Err(invalid("a selector opened with ( is not closed."));
            }
            for rule in inner.into_iter().filter(|r| !r.is_empty()) {
                selector_rule(rule)?;
            }
            continue;
        }
        rule(token)?;
    }
    Ok(())
}

/// A rule outside selectors.
fn rule(token: &str) -> Result<(), ApiError> {
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "on" | "off" | "clearselectors" => Ok(()),
        "nopass" | "resetpass" | "reset" => Err(password_rule()),
        _ if token.starts_with(['>', '<', '#', '!']) => Err(password_rule()),
        _ => selector_rule(token),
    }
}

fn password_rule() -> ApiError {
    invalid(
        "passwords cannot be set in an access string (>, <, #, !, nopass, resetpass, reset); use Passwords or AuthenticationMode.",
    )
}

/// A rule about keys, channels or commands (allowed at top level and inside selectors).
fn selector_rule(token: &str) -> Result<(), ApiError> {
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "allkeys" | "resetkeys" | "allchannels" | "resetchannels" | "allcommands" | "nocommands" => return Ok(()),
        _ => {}
    }
    if token.starts_with(['>', '<', '#', '!']) || lower == "nopass" || lower == "resetpass" || lower == "reset" {
        return Err(password_rule());
    }
    if let Some(pattern) = token.strip_prefix('~') {
        return pattern_rule(token, pattern);
    }
    if let Some(pattern) = token.strip_prefix('&') {
        return pattern_rule(token, pattern);
    }
    if let Some(rest) = token.strip_prefix('%') {
        // %R~pattern, %W~pattern, %RW~pattern
        let Some((flags, pattern)) = rest.split_once('~') else {
            return Err(invalid(format!("{token} must be %R~, %W~ or %RW~ followed by a key pattern.")));
        };
        let flags = flags.to_ascii_uppercase();
        if flags.is_empty() || !flags.chars().all(|c| c == 'R' || c == 'W') {
            return Err(invalid(format!("{token} must be %R~, %W~ or %RW~ followed by a key pattern.")));
        }
        return pattern_rule(token, pattern);
    }
    if let Some(rest) = token.strip_prefix(['+', '-']) {
        if let Some(category) = rest.strip_prefix('@') {
            if CATEGORIES.contains(&category.to_ascii_lowercase().as_str()) {
                return Ok(());
            }
            return Err(invalid(format!("unknown command category in {token}.")));
        }
        return command_rule(token, rest);
    }
    Err(invalid(format!("unknown rule {token}.")))
}

fn pattern_rule(token: &str, pattern: &str) -> Result<(), ApiError> {
    if pattern.is_empty() {
        return Err(invalid(format!("{token} needs a pattern.")));
    }
    Ok(())
}

/// `command` or `command|subcommand`: names are letters, digits, `-`, `_`, `.` and `:`
/// (module commands such as `JSON.GET`).
fn command_rule(token: &str, command: &str) -> Result<(), ApiError> {
    let name_ok = |name: &str| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    };
    let ok = match command.split_once('|') {
        Some((command, sub)) => name_ok(command) && name_ok(sub),
        None => name_ok(command),
    };
    if ok { Ok(()) } else { Err(invalid(format!("{token} is not a command rule."))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_redis_acl_rules() {
        for good in [
            "on ~* +@all",
            "off",
            "on ~app::* -@all +@read +@hash +@bitmap +@geo -setbit -bitfield -hset",
            "on %R~read:* %W~write:* %RW~both:* &chan:* allchannels resetchannels",
            "on allkeys allcommands",
            "on resetkeys ~a* nocommands +get +client|setname -config|set",
            "on ~* +@all (~other:* +get) clearselectors",
            "on ~* (~x:* +set +get)",
            "on ~* +json.get",
            "ON ~* +@ALL",
        ] {
            assert!(validate(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn rejects_invalid_rules() {
        for bad in [
            "",
            "   ",
            "maybe",
            "on ~",
            "on &",
            "on %X~key",
            "on %R",
            "on +@nosuchcategory",
            "on +",
            "on +get|",
            "on +ge$t",
            "on (~x +get",
            "on *",
        ] {
            assert_eq!(validate(bad).unwrap_err().code, "InvalidParameterValue", "{bad}");
        }
    }

    #[test]
    fn refuses_passwords_without_repeating_them() {
        for bad in [
            "on >supersecretpassword1 ~* +@all",
            "on <supersecretpassword1",
            "on #e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "on !e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "on nopass",
            "on resetpass",
            "reset on",
            "on (~x >supersecretpassword1)",
        ] {
            let error = validate(bad).unwrap_err();
            assert_eq!(error.code, "InvalidParameterValue", "{bad}");
            assert!(!error.message.contains("supersecret"), "{}", error.message);
            assert!(!error.message.contains("e3b0c442"), "{}", error.message);
        }
    }
}
