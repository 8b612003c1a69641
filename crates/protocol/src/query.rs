//! The AWS Query form encoding and [`FromQuery`], which decodes model shapes from it.
//!
//! A request is a flat set of `key=value` pairs: structures nest with dots
//! (`NotificationConfiguration.TopicArn`), lists number their members from 1 under the
//! member's name (`Tags.Tag.1.Key`, `TagKeys.member.1`), and an empty list is sent as the
//! bare key (`SecurityGroupIds=`).

use std::collections::BTreeMap;
use std::ops::Bound;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use crate::ApiError;

/// The decoded form of one request. Keys are kept sorted so that "is anything under this
/// prefix" is a single range lookup.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    params: BTreeMap<String, String>,
}

impl QueryParams {
    /// Parses an `application/x-www-form-urlencoded` body or query string. The first
    /// occurrence of a key wins, as on AWS.
    pub fn parse(input: &[u8]) -> Self {
        let mut params = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(input) {
            params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
        }
        Self { params }
    }

    /// Every key sent, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// True when `prefix` itself or anything nested under it (`prefix.…`) was sent.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        // Keys under `prefix.` sort directly after `prefix` and before any sibling such as
        // `prefix0`, because '.' sorts before every digit and letter.
        match self.params.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).next() {
            Some((key, _)) => {
                key == prefix || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'.'))
            }
            None => false,
        }
    }

    /// The numbers sent under `prefix.` (`prefix.1…`, `prefix.3.Key`, …): list indexes.
    fn indexes_under(&self, prefix: &str) -> Vec<usize> {
        let start = format!("{prefix}.");
        self.params
            .range::<str, _>((Bound::Included(start.as_str()), Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(&start))
            .filter_map(|key| key[start.len()..].split('.').next()?.parse().ok())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

/// Joins a parent path and a member name into a Query key.
pub fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// A shape that can be read from the Query form at a given key prefix.
pub trait FromQuery: Sized {
    /// `Ok(None)` when nothing was sent at `path`.
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError>;
}

fn invalid(path: &str, value: &str, expected: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!("Value ({value}) for parameter {path} is invalid. Expected {expected}."))
}

impl FromQuery for String {
    /// Text XML 1.0 cannot carry (control characters, U+FFFE, U+FFFF) is refused: it could
    /// never be answered back. The message does not repeat it.
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {
        match q.get(path) {
            Some(v) if !v.chars().all(crate::xml::is_xml_char) => Err(ApiError::invalid_parameter_value(format!(
                "The value for parameter {path} contains characters that are not allowed."
            ))),
            v => Ok(v.map(str::to_string)),
        }
    }
}

impl FromQuery for i32 {
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {
        match q.get(path) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| invalid(path, v, "an integer")),
        }
    }
}

impl FromQuery for f64 {
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {
        match q.get(path) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(invalid(path, v, "a number")),
            },
        }
    }
}

impl FromQuery for bool {
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {
        match q.get(path) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(invalid(path, v, "true or false")),
        }
    }
}

impl FromQuery for DateTime {
    /// ISO 8601 as the SDKs send it; epoch seconds are accepted too, as AWS does.
    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {
        let Some(v) = q.get(path) else { return Ok(None) };
        let v = v.trim();
        if let Ok(t) = DateTime::from_str(v, Format::DateTime) {
            return Ok(Some(t));
        }
        match v.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs.abs() < 1e12 => Ok(Some(DateTime::from_secs_f64(secs))),
            _ => Err(invalid(path, v, "an ISO 8601 timestamp")),
        }
    }
}

/// Reads a list sent as `path.member.1`, `path.member.2`, … (`member` being the list's
/// member name in the model). A bare `path=` is an empty list.
pub fn list<T: FromQuery>(q: &QueryParams, path: &str, member: &str) -> Result<Option<Vec<T>>, ApiError> {
    if !q.has_prefix(path) {
        return Ok(None);
    }
    let mut items = Vec::new();
    let base = join(path, member);
    // Members are numbered from 1 without gaps; reading stops at the first missing index.
    for index in 1.. {
        match T::from_query(q, &format!("{base}.{index}"))? {
            Some(item) => items.push(item),
            None => break,
        }
    }
    // A member past a gap (or numbered 0) would be dropped silently: refused instead.
    if let Some(stray) = q.indexes_under(&base).into_iter().find(|&i| i == 0 || i > items.len()) {
        return Err(ApiError::invalid_parameter_value(format!(
            "The members of {path} must be numbered from 1 without gaps; {base}.{stray} follows {} member(s).",
            items.len()
        )));
    }
    Ok(Some(items))
}

/// Checks the model's length bounds on a list.
pub fn check_list_len<T>(
    path: &str,
    items: &Option<Vec<T>>,
    min: Option<usize>,
    max: Option<usize>,
) -> Result<(), ApiError> {
    let Some(items) = items else { return Ok(()) };
    if min.is_some_and(|min| items.len() < min) || max.is_some_and(|max| items.len() > max) {
        let bounds = match (min, max) {
            (Some(min), Some(max)) => format!("between {min} and {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => unreachable!("called without bounds"),
        };
        return Err(ApiError::invalid_parameter_value(format!(
            "{path} has {} members; it must have {bounds}.",
            items.len()
        )));
    }
    Ok(())
}

/// Checks the model's length bounds on a string.
pub fn check_str_len(
    path: &str,
    value: &Option<String>,
    min: Option<usize>,
    max: Option<usize>,
) -> Result<(), ApiError> {
    let Some(value) = value else { return Ok(()) };
    let len = value.chars().count();
    if min.is_some_and(|min| len < min) || max.is_some_and(|max| len > max) {
        return Err(ApiError::invalid_parameter_value(format!("The length of parameter {path} is out of range.")));
    }
    Ok(())
}

/// A required member: absent means AWS's `MissingParameter`.
pub fn required<T>(path: &str, value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::missing_parameter(path))
}

/// Decodes an enum member from its wire value.
pub fn enum_value<T>(
    q: &QueryParams,
    path: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &[&str],
) -> Result<Option<T>, ApiError> {
    match q.get(path) {
        None => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| invalid_enum(path, v, allowed)),
    }
}

fn invalid_enum(path: &str, value: &str, allowed: &[&str]) -> ApiError {
    if path == "AuthenticationMode.Type" {
        return ApiError::authentication_type_not_allowed(value);
    }
    ApiError::invalid_parameter_value(format!(
        "Value ({value}) for parameter {path} is invalid. Valid values: {}.",
        allowed.join(", ")
    ))
}
