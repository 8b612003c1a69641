//! Exports to an S3-compatible object store (MinIO, a local S3 server, AWS itself over
//! plain HTTP): one path-style `PUT /<bucket>/<key>` per file, signed with SigV4 by the
//! protocol crate's signer. Without a configured endpoint, exports go to the local export
//! directory instead.

use aws_smithy_types::DateTime;
use protocol::sigv4::{self, HttpRequest, SigningParams};

/// Where exports go, and the credentials to sign with.
#[derive(Clone)]
pub struct S3Target {
    /// `http://host:port`, without a trailing slash.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Target {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target").field("endpoint", &self.endpoint).field("region", &self.region).finish()
    }
}

fn hex_sha256(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

impl S3Target {
    /// The `s3://` address an object has, for events and logs.
    pub fn describe(&self, bucket: &str, key: &str) -> String {
        format!("s3://{bucket}/{key} at {}", self.endpoint)
    }

    /// Uploads `body` as `bucket/key`; the error says what the store answered.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        let url: reqwest::Url =
            format!("{}/{bucket}/{key}", self.endpoint).parse().map_err(|e| format!("bad S3 endpoint: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return Err("the S3 endpoint has no host".to_string()),
        };
        let payload_hash = hex_sha256(&body);
        let length = body.len().to_string();
        let headers = [
            ("host", host.as_str()),
            ("x-amz-content-sha256", payload_hash.as_str()),
            ("content-length", length.as_str()),
        ];
        let request = HttpRequest {
            method: "PUT",
            path: url.path(),
            query: url.query().unwrap_or(""),
            headers: &headers,
            body: &body,
        };
        let params = SigningParams {
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            region: &self.region,
            service: "s3",
            time: DateTime::from(std::time::SystemTime::now()),
        };
        let (amz_date, authorization) = sigv4::sign(&request, &params);
        let response = reqwest::Client::new()
            .put(url)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", amz_date)
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("S3 request failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let code = text.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or("");
        Err(format!("S3 answered {status} {code}"))
    }
}
