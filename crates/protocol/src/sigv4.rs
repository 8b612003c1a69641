//! AWS Signature Version 4: checks that a request was signed with the secret of a known access
//! key, and answers the errors AWS answers when it was not.
//!
//! [`verify`] is a pure function of the request as received (method, raw path and query,
//! headers, body), the current time and a secret lookup, so it is tested with AWS's published
//! vectors and needs no server. Both forms AWS accepts are checked: the `Authorization` header
//! and presigned query-string parameters (`X-Amz-Algorithm`, `X-Amz-Signature`, ...).
//! [`sign`] is the client side, for tests and tools that build requests by hand.
//!
//! The canonical request follows the rules of every AWS service but S3: the path is normalized
//! (dot segments and empty segments removed) and URI-encoded again, query parameters are
//! decoded and re-encoded with AWS's unreserved set and sorted, the payload hash is that of the
//! body actually received.

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The only algorithm accepted (SigV4a's `AWS4-ECDSA-P256-SHA256` is not).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from the server's clock, either way, as on AWS.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest validity a presigned request may ask for (`X-Amz-Expires`): 7 days.
pub const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// An HTTP request as the server received it; nothing decoded or normalized yet.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded (`/`, `/a%20b`).
    pub path: &'a str,
    /// The query string as sent, without `?` (empty when there is none).
    pub query: &'a str,
    /// Every header, names in any case, repeated names as separate entries.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Who signed a request that [`verify`] accepted, and for which region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
}

/// The parts of a signature, wherever the request carried them.
struct Signature {
    access_key_id: String,
    scope_date: String,
    region: String,
    service: String,
    terminator: String,
    signed_headers: Vec<String>,
    signature: String,
    /// `X-Amz-Date` (or `Date`) parsed, with the form that goes into the string to sign.
    timestamp: DateTime,
    amz_date: String,
    /// Presigned requests only: seconds the signature stays valid.
    expires: Option<i64>,
}

/// Checks the SigV4 signature of `request` for `service` (`elasticache`) at time `now`;
/// `secret_for` gives the secret access key of an access key id, or `None` for an unknown one.
///
/// Errors are AWS's: `IncompleteSignature` (400) when the signature or its date is missing or
/// malformed, `InvalidClientTokenId` (403) for an unknown access key, `SignatureDoesNotMatch`
/// (403) for a wrong signature, a wrong credential scope, or a date more than 15 minutes off.
pub fn verify<S: AsRef<str>>(
    request: &HttpRequest<'_>,
    service: &str,
    now: DateTime,
    secret_for: impl Fn(&str) -> Option<S>,
) -> Result<Verified, ApiError> {
    let query_auth = query_param(request.query, "X-Amz-Algorithm").is_some();
    let header_auth = header(request.headers, "authorization");
    let signature = match (header_auth, query_auth) {
        (Some(_), true) => {
            return Err(ApiError::incomplete_signature(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization \
                 header should be specified",
            ));
        }
        (Some(value), false) => parse_authorization_header(value, request.headers)?,
        (None, true) => parse_query_auth(request.query)?,
        (None, false) => {
            return Err(ApiError::incomplete_signature(
                "Request is missing Authentication Token: sign it with AWS Signature Version 4 \
                 (an Authorization header or X-Amz-Signature query parameters)",
            ));
        }
    };
    let Some(secret) = secret_for(&signature.access_key_id) else {
        return Err(ApiError::invalid_client_token_id());
    };
    check_time(&signature, now)?;
    check_scope(&signature, service)?;

    let signed_headers: Vec<&str> = signature.signed_headers.iter().map(String::as_str).collect();
    let canonical = canonical_request(request, &signed_headers, signature.expires.is_some())
        .ok_or_else(|| ApiError::signature_does_not_match(MISMATCH))?;
    let scope = format!("{}/{}/{}/{}", signature.scope_date, signature.region, signature.service, signature.terminator);
    let string_to_sign = string_to_sign(&signature.amz_date, &scope, &canonical);
    let key = signing_key(secret.as_ref(), &signature.scope_date, &signature.region, &signature.service);
    let mac = hmac(&key, string_to_sign.as_bytes());
    let provided = decode_hex(&signature.signature).ok_or_else(|| ApiError::signature_does_not_match(MISMATCH))?;
    // verify_slice compares in constant time, so timing tells nothing about the right signature.
    mac.verify_slice(&provided).map_err(|_| ApiError::signature_does_not_match(MISMATCH))?;
    Ok(Verified { access_key_id: signature.access_key_id, region: signature.region })
}

/// AWS's message for a signature that does not match.
const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your \
                        AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// What [`sign`] signs with.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub time: DateTime,
}

/// Signs `request` with every header it has (which must include `host`) plus `x-amz-date`,
/// and returns the `(x-amz-date, authorization)` header values to add to it.
pub fn sign(request: &HttpRequest<'_>, params: &SigningParams<'_>) -> (String, String) {
    let amz_date = format_amz_date(params.time);
    let mut headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("x-amz-date") && !name.eq_ignore_ascii_case("authorization"))
        .copied()
        .collect();
    headers.push(("x-amz-date", &amz_date));
    let mut names: Vec<String> = headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let signed_headers: Vec<&str> = names.iter().map(String::as_str).collect();
    let with_date = HttpRequest { headers: &headers, ..*request };
    // Every signed header is present by construction, so a canonical request always exists.
    let canonical = canonical_request(&with_date, &signed_headers, false).unwrap_or_default();
    let scope_date = &amz_date[..8];
    let scope = format!("{scope_date}/{}/{}/aws4_request", params.region, params.service);
    let string_to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(params.secret_access_key, scope_date, params.region, params.service);
    let signature = encode_hex(&hmac(&key, string_to_sign.as_bytes()).finalize().into_bytes());
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        params.access_key_id,
        signed_headers.join(";")
    );
    (amz_date, authorization)
}

/// `20150830T123600Z`, the form of `X-Amz-Date`.
pub fn format_amz_date(time: DateTime) -> String {
    let whole = DateTime::from_secs(time.secs());
    whole.fmt(Format::DateTime).unwrap_or_default().replace(['-', ':'], "")
}

fn parse_amz_date(value: &str) -> Option<DateTime> {
    let b = value.as_bytes();
    let shaped =
        b.len() == 16 && b[8] == b'T' && b[15] == b'Z' && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !shaped {
        return None;
    }
    let extended = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    DateTime::from_str(&extended, Format::DateTime).ok()
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/elasticache/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=…`, with the date from `X-Amz-Date` or `Date`.
fn parse_authorization_header(value: &str, headers: &[(&str, &str)]) -> Result<Signature, ApiError> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(ApiError::incomplete_signature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'; only {ALGORITHM} (Signature Version 4) is accepted"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, part) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed_headers)] {
        if part.is_none_or(str::is_empty) {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    let (timestamp, amz_date) = match header(headers, "x-amz-date") {
        Some(v) => (parse_amz_date(v.trim()), v.trim().to_string()),
        None => match header(headers, "date") {
            Some(v) => {
                let parsed = DateTime::from_str(v.trim(), Format::HttpDate).ok();
                (parsed, parsed.map(format_amz_date).unwrap_or_default())
            }
            None => {
                missing
                    .push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
                (None, String::new())
            }
        },
    };
    if !missing.is_empty() {
        return Err(ApiError::incomplete_signature(format!("{missing}Authorization={algorithm}")));
    }
    let Some(timestamp) = timestamp else {
        return Err(ApiError::incomplete_signature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(ApiError::incomplete_signature(format!("Authorization={algorithm}")));
    };
    build(credential, signed_headers, signature, timestamp, amz_date, None)
}

/// Presigned: `?X-Amz-Algorithm=…&X-Amz-Credential=…&X-Amz-Date=…&X-Amz-Expires=…
/// &X-Amz-SignedHeaders=…&X-Amz-Signature=…`.
fn parse_query_auth(query: &str) -> Result<Signature, ApiError> {
    let algorithm = query_param(query, "X-Amz-Algorithm").unwrap_or_default();
    if algorithm != ALGORITHM {
        return Err(ApiError::incomplete_signature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'; only {ALGORITHM} (Signature Version 4) is accepted"
        )));
    }
    let names = ["X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"];
    let values = names.map(|name| query_param(query, name).filter(|v| !v.is_empty()));
    let missing: Vec<&str> = names.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        return Err(ApiError::incomplete_signature(format!(
            "AWS query-string parameters must include {}. Re-examine the query-string parameters.",
            missing.join(", ")
        )));
    }
    let [Some(credential), Some(date), Some(expires), Some(signed_headers), Some(signature)] = values else {
        return Err(ApiError::incomplete_signature("Re-examine the query-string parameters."));
    };
    let Some(timestamp) = parse_amz_date(&date) else {
        return Err(ApiError::incomplete_signature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };
    let expires = match expires.parse::<i64>() {
        Ok(secs) if (1..=MAX_EXPIRES_SECS).contains(&secs) => secs,
        _ => {
            return Err(ApiError::incomplete_signature(format!(
                "X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES_SECS}"
            )));
        }
    };
    build(&credential, &signed_headers, &signature, timestamp, date.to_string(), Some(expires))
}

fn build(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    timestamp: DateTime,
    amz_date: String,
    expires: Option<i64>,
) -> Result<Signature, ApiError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, terminator] = parts[..] else {
        return Err(ApiError::incomplete_signature(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got \
             '{credential}'"
        )));
    };
    Ok(Signature {
        access_key_id: access_key_id.to_string(),
        scope_date: scope_date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        terminator: terminator.to_string(),
        signed_headers: signed_headers.split(';').map(str::to_string).collect(),
        signature: signature.to_string(),
        timestamp,
        amz_date,
        expires,
    })
}

/// A signature is good for 15 minutes either side of its date (presigned: until it expires).
fn check_time(signature: &Signature, now: DateTime) -> Result<(), ApiError> {
    let (now_secs, signed) = (now.secs(), signature.timestamp.secs());
    let now_text = format_amz_date(now);
    let at = |secs: i64| format_amz_date(DateTime::from_secs(secs));
    if let Some(expires) = signature.expires
        && now_secs > signed + expires
    {
        return Err(ApiError::signature_does_not_match(format!(
            "Signature expired: {} is now earlier than {} ({now_text} - {expires} sec.)",
            signature.amz_date,
            at(now_secs - expires)
        )));
    }
    if signature.expires.is_none() && signed < now_secs - MAX_SKEW_SECS {
        return Err(ApiError::signature_does_not_match(format!(
            "Signature expired: {} is now earlier than {} ({now_text} - 15 min.)",
            signature.amz_date,
            at(now_secs - MAX_SKEW_SECS)
        )));
    }
    if signed > now_secs + MAX_SKEW_SECS {
        return Err(ApiError::signature_does_not_match(format!(
            "Signature not yet current: {} is still later than {} ({now_text} + 15 min.)",
            signature.amz_date,
            at(now_secs + MAX_SKEW_SECS)
        )));
    }
    Ok(())
}

/// Any region is accepted (resources live per region); the service, date and terminator must
/// be the ones AWS expects.
fn check_scope(signature: &Signature, service: &str) -> Result<(), ApiError> {
    let date = &signature.amz_date[..8.min(signature.amz_date.len())];
    if signature.scope_date != date {
        return Err(ApiError::signature_does_not_match(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != \
             '{date}', from '{}'.",
            signature.scope_date, signature.amz_date
        )));
    }
    let region_ok = !signature.region.is_empty()
        && signature.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            signature.region
        )));
    }
    if signature.service != service {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if signature.terminator != "aws4_request" {
        return Err(ApiError::signature_does_not_match(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            signature.terminator
        )));
    }
    Ok(())
}

/// The canonical request, or `None` when a signed header is not in the request.
fn canonical_request(request: &HttpRequest<'_>, signed_headers: &[&str], presigned: bool) -> Option<String> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return None;
        }
        canonical_headers.push_str(&format!("{}:{}\n", name.to_ascii_lowercase(), values.join(",")));
    }
    Some(format!(
        "{}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query, presigned),
        signed_headers.join(";"),
        encode_hex(&Sha256::digest(request.body)),
    ))
}

/// Dot segments and empty segments removed, then every byte but the unreserved ones and `/`
/// encoded again (so `%20` becomes `%2520`), as the SDKs do for every service but S3.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = path.ends_with('/') && !segments.is_empty();
    let mut uri = String::from("/");
    uri.push_str(&segments.iter().map(|s| uri_encode(s.as_bytes())).collect::<Vec<_>>().join("/"));
    if trailing {
        uri.push('/');
    }
    uri
}

/// Parameters decoded, re-encoded with AWS's unreserved set and sorted; a presigned request's
/// own signature is left out.
fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(key, _)| !(presigned && percent_decode(key) == b"X-Amz-Signature"))
        .map(|(key, value)| (uri_encode(&percent_decode(key)), uri_encode(&percent_decode(value))))
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", encode_hex(&Sha256::digest(canonical_request.as_bytes())))
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes()).finalize().into_bytes().to_vec();
    }
    key
}

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    mac.update(data);
    mac
}

/// The first value of a header, by case-insensitive name.
fn header<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// The first value of a query parameter, decoded; `None` when absent or not UTF-8.
fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name.as_bytes()).then(|| {
            if value.contains('%') {
                String::from_utf8(percent_decode(value)).ok().map(std::borrow::Cow::Owned)
            } else {
                Some(std::borrow::Cow::Borrowed(value))
            }
        })?
    })
}

/// `%XX` sequences decoded; anything else (including `+` and a stray `%`) kept as it is.
fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Every byte but `A-Z a-z 0-9 - _ . ~` as `%XX` (upper-case hex).
fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests;
