//! Strict mode (`--auth strict --access-key …`): every Query API request must carry a valid
//! SigV4 signature. Checked with requests the real SDK signs (good key, unknown key, wrong
//! secret, a clock 20 minutes behind) and with raw ones (unsigned, tampered after signing,
//! expired), asserting AWS's error codes and HTTP statuses. The default stays permissive.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_async::time::StaticTimeSource;
use aws_smithy_types::DateTime;
use e2e::{REGION, TestServer, api_error, sdk_config};
use protocol::sigv4::{self, HttpRequest, SigningParams};
use server::auth::{AccessKey, AuthSettings};

const KEY_ID: &str = "AKIDSTRICTTEST";
const SECRET: &str = "strict/Secret+Key0123456789abcdefEXAMPLE";
const DESCRIBE: &str = "Action=DescribeCacheClusters&Version=2015-02-02";
const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

async fn strict_server() -> TestServer {
    TestServer::start_with(|config| {
        config.auth = AuthSettings::strict(vec![AccessKey { id: KEY_ID.into(), secret: SECRET.into() }]);
    })
    .await
}

/// An SDK client signing with these credentials (and, optionally, a clock of its own).
fn client(server: &TestServer, key_id: &str, secret: &str, clock: Option<SystemTime>) -> Client {
    let credentials = Credentials::new(key_id, secret, None, None, "auth-e2e");
    let mut config =
        sdk_config(&server.endpoint(), REGION).credentials_provider(SharedCredentialsProvider::new(credentials));
    if let Some(time) = clock {
        config = config.time_source(aws_smithy_async::time::SharedTimeSource::new(StaticTimeSource::new(time)));
    }
    Client::from_conf(config.build())
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    /// `<Code>` of an `<ErrorResponse>`, checking the envelope on the way.
    fn code(&self) -> &str {
        assert!(self.body.contains("<ErrorResponse"), "not an AWS error envelope: {}", self.body);
        assert!(self.body.contains("<Type>Sender</Type>"), "{}", self.body);
        between(&self.body, "<Code>", "</Code>")
    }

    fn message(&self) -> &str {
        between(&self.body, "<Message>", "</Message>")
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    text.split_once(open).and_then(|(_, rest)| rest.split_once(close)).map_or("", |(inner, _)| inner)
}

/// POSTs `body` with these extra headers.
async fn post(server: &TestServer, headers: &[(&str, String)], body: &str) -> Reply {
    let mut request = reqwest::Client::new()
        .post(server.endpoint() + "/")
        .header("content-type", CONTENT_TYPE)
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    Reply { status, body: response.text().await.expect("response body") }
}

/// The `x-amz-date` and `authorization` headers of `body` POSTed to `/`, signed at `time`
/// with the good key, by the verifier's own signing helper.
fn signed_headers(server: &TestServer, body: &str, time: SystemTime) -> Vec<(&'static str, String)> {
    let host = server.addr().to_string();
    let headers = [("host", host.as_str()), ("content-type", CONTENT_TYPE)];
    let request = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body: body.as_bytes() };
    let params = SigningParams {
        access_key_id: KEY_ID,
        secret_access_key: SECRET,
        region: REGION,
        service: "elasticache",
        time: DateTime::from(time),
    };
    let (amz_date, authorization) = sigv4::sign(&request, &params);
    vec![("x-amz-date", amz_date), ("authorization", authorization)]
}

#[tokio::test]
async fn a_configured_key_is_served() {
    let server = strict_server().await;
    let client = client(&server, KEY_ID, SECRET, None);
    let clusters = client.describe_cache_clusters().send().await.expect("DescribeCacheClusters with a good key");
    assert!(clusters.cache_clusters().is_empty());
    // A write too, and the region still comes from the signature.
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name("strict-pg")
        .cache_parameter_group_family("redis7")
        .description("signed")
        .send()
        .await
        .expect("CreateCacheParameterGroup with a good key");
    let groups = client.describe_cache_parameter_groups().cache_parameter_group_name("strict-pg").send().await;
    let arn = groups.expect("described").cache_parameter_groups()[0].arn().unwrap_or_default().to_string();
    assert!(arn.starts_with(&format!("arn:aws:elasticache:{REGION}:")), "{arn}");
    // The admin API is not the Query API: it needs no signature.
    let health = reqwest::get(server.endpoint() + "/_emulator/health").await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn an_unknown_access_key_is_invalid_client_token_id() {
    let server = strict_server().await;
    let client = client(&server, "AKIDNOBODYKNOWS", SECRET, None);
    let error = api_error(client.describe_cache_clusters().send().await);
    assert_eq!((error.code.as_str(), error.status), ("InvalidClientTokenId", 403), "{error:?}");
    assert_eq!(error.message, "The security token included in the request is invalid.");
}

#[tokio::test]
async fn a_wrong_secret_does_not_match() {
    let server = strict_server().await;
    let client = client(&server, KEY_ID, "not-the-secret", None);
    let error = api_error(client.describe_cache_clusters().send().await);
    assert_eq!((error.code.as_str(), error.status), ("SignatureDoesNotMatch", 403), "{error:?}");
    assert!(error.message.starts_with("The request signature we calculated does not match"), "{error:?}");
    assert!(!error.message.contains(SECRET) && !error.message.contains("not-the-secret"));
}

#[tokio::test]
async fn an_unsigned_request_is_an_incomplete_signature() {
    let server = strict_server().await;
    let reply = post(&server, &[], DESCRIBE).await;
    assert_eq!((reply.status, reply.code()), (400, "IncompleteSignature"), "{}", reply.body);
    // Signed, but without its date.
    let mut headers = signed_headers(&server, DESCRIBE, SystemTime::now());
    headers.retain(|(name, _)| *name != "x-amz-date");
    let reply = post(&server, &headers, DESCRIBE).await;
    assert_eq!((reply.status, reply.code()), (400, "IncompleteSignature"), "{}", reply.body);
    assert!(reply.message().contains("X-Amz-Date"), "{}", reply.body);
    // An Authorization header that is no SigV4.
    let reply = post(&server, &[("authorization", "Bearer abc".into())], DESCRIBE).await;
    assert_eq!((reply.status, reply.code()), (400, "IncompleteSignature"), "{}", reply.body);
}

#[tokio::test]
async fn a_body_changed_after_signing_does_not_match() {
    let server = strict_server().await;
    let headers = signed_headers(&server, DESCRIBE, SystemTime::now());
    // The helper's signature is one the server accepts ...
    let untouched = post(&server, &headers, DESCRIBE).await;
    assert_eq!(untouched.status, 200, "{}", untouched.body);
    assert!(untouched.body.contains("<DescribeCacheClustersResponse"), "{}", untouched.body);
    // ... until the body changes.
    let tampered = "Action=DeleteCacheCluster&Version=2015-02-02&CacheClusterId=victim";
    let reply = post(&server, &headers, tampered).await;
    assert_eq!((reply.status, reply.code()), (403, "SignatureDoesNotMatch"), "{}", reply.body);
}

#[tokio::test]
async fn an_expired_request_is_refused() {
    let server = strict_server().await;
    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    let reply = post(&server, &signed_headers(&server, DESCRIBE, twenty_minutes_ago), DESCRIBE).await;
    assert_eq!((reply.status, reply.code()), (403, "SignatureDoesNotMatch"), "{}", reply.body);
    assert!(reply.message().starts_with("Signature expired: "), "{}", reply.body);
    assert!(reply.message().contains(" is now earlier than ") && reply.message().ends_with(" - 15 min.)"));

    // The SDK on a clock 20 minutes behind gets the same answer.
    let client = client(&server, KEY_ID, SECRET, Some(twenty_minutes_ago));
    let error = api_error(client.describe_cache_clusters().send().await);
    assert_eq!((error.code.as_str(), error.status), ("SignatureDoesNotMatch", 403), "{error:?}");
    assert!(error.message.starts_with("Signature expired: "), "{error:?}");
    // And 20 minutes ahead, "not yet current".
    let ahead = client_ahead(&server);
    let error = api_error(ahead.describe_cache_clusters().send().await);
    assert_eq!((error.code.as_str(), error.status), ("SignatureDoesNotMatch", 403), "{error:?}");
    assert!(error.message.starts_with("Signature not yet current: "), "{error:?}");
}

fn client_ahead(server: &TestServer) -> Client {
    client(server, KEY_ID, SECRET, Some(SystemTime::now() + Duration::from_secs(20 * 60)))
}

#[tokio::test]
async fn permissive_by_default() {
    let server = TestServer::start().await;
    let reply = post(&server, &[], DESCRIBE).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let client = client(&server, "anything", "goes", None);
    client.describe_cache_clusters().send().await.expect("any key works in permissive mode");
}

#[tokio::test]
async fn strict_without_keys_does_not_start() {
    let state_dir = tempfile_dir();
    let result = TestServer::try_start_with(state_dir, |config| config.auth = AuthSettings::strict(vec![])).await;
    let error = result.err().expect("strict mode without keys must not start");
    assert!(format!("{error:#}").contains("--access-key"), "{error:#}");
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary state dir")
}
