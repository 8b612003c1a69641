//! The AWS Query endpoint: `POST` with a form body or `GET` with a query string, on any path.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{API_VERSION, ApiError, QueryParams, RequestContext};

use crate::{AppState, REQUEST_ID_HEADER};

pub fn routes() -> Router<AppState> {
    Router::new().fallback(handle)
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST && parts.method != Method::GET {
        let error = ApiError::invalid_action(parts.method.as_str());
        return xml_response(StatusCode::METHOD_NOT_ALLOWED, protocol::xml::error_response(&error, &request_id));
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > crate::BODY_LIMIT_BYTES) {
        return error_response(&body_too_large(), &request_id);
    }
    let read_body = axum::body::to_bytes(body, crate::BODY_LIMIT_BYTES);
    let body = match tokio::time::timeout(state.config.connections.body_read_timeout, read_body).await {
        Ok(Ok(body)) => body,
        // Past the limit (a chunked body declares no length), or cut off.
        Ok(Err(_)) => return error_response(&body_too_large(), &request_id),
        Err(_) => return error_response(&ApiError::request_timeout(), &request_id),
    };
    // Checked before anything in the request is acted on; the body hash is part of the signature.
    let region = match state.config.auth.check(&parts, &body) {
        Ok(Some(verified)) => verified.region,
        Ok(None) => signed_region(&parts.headers).unwrap_or_else(|| state.config.region.clone()),
        Err(error) => {
            tracing::info!(request_id, code = error.code, message = %error.message, "request refused by strict auth");
            return error_response(&error, &request_id);
        }
    };
    let params = match parameters(&parts.method, parts.uri.query().unwrap_or(""), &body) {
        Ok(params) => params,
        Err(error) => return error_response(&error, &request_id),
    };
    let ctx = RequestContext { request_id: request_id.clone(), region, account: state.config.account.clone() };
    let result = call(&state, &ctx, &params).await;
    let action = params.get("Action").unwrap_or_default();
    match &result {
        // An action the API does not know is not a label of its own.
        Err(error) if error.code == "InvalidAction" || action.is_empty() => state.metrics.record("unknown", error.code),
        Err(error) => state.metrics.record(action, error.code),
        Ok(_) => state.metrics.record(action, "ok"),
    }
    match result {
        Ok(body) => xml_response(StatusCode::OK, body),
        Err(error) => {
            if error.status >= 500 && error.code != "NotImplemented" {
                tracing::error!(request_id, code = error.code, message = %error.message, "request failed");
            }
            error_response(&error, &request_id)
        }
    }
}

/// The request's parameters: a GET's query string; a POST's body (AWS's SDKs send
/// nothing in its query string), or its query string when the body is empty. A POST whose
/// query string says something its body does not is refused, never merged: the two could
/// name different actions or resources.
fn parameters(method: &Method, query: &str, body: &[u8]) -> Result<QueryParams, ApiError> {
    let from_query = QueryParams::parse(query.as_bytes());
    if *method == Method::GET || body.is_empty() {
        return Ok(from_query);
    }
    let from_body = QueryParams::parse(body);
    if let Some(key) = from_query.keys().find(|key| from_body.get(key) != from_query.get(key)) {
        return Err(ApiError::invalid_parameter_combination(format!(
            "The query string and the body of the request disagree on {key}; send every parameter in the body."
        )));
    }
    Ok(from_body)
}

/// A body past the limit gets a 413, as an error document like any other.
fn body_too_large() -> ApiError {
    ApiError::request_entity_too_large(crate::BODY_LIMIT_BYTES)
}

async fn call(state: &AppState, ctx: &RequestContext, params: &QueryParams) -> Result<String, ApiError> {
    let action = params.get("Action").filter(|a| !a.is_empty()).ok_or_else(ApiError::missing_action)?;
    if let Some(version) = params.get("Version").filter(|v| *v != API_VERSION) {
        return Err(ApiError::invalid_version(version));
    }
    tracing::debug!(action, request_id = ctx.request_id, region = ctx.region, "api call");
    protocol::dispatch(state.operations.as_ref(), ctx, action, params).await
}

fn error_response(error: &ApiError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    xml_response(status, protocol::xml::error_response(error, request_id))
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, Bytes::from(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// The region a SigV4-signed request was signed for
/// (`Credential=AKID/20240101/us-west-2/elasticache/aws4_request`), so that clients
/// configured for different regions see different resources, as on AWS.
fn signed_region(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let region = credential.split(['/', ',']).nth(2)?;
    let valid = !region.is_empty()
        && region.len() <= 32
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-3/elasticache/aws4_request, SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(signed_region(&headers).as_deref(), Some("eu-west-3"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Credential=A/d/EVIL region/x"));
        assert_eq!(signed_region(&headers), None);
        assert_eq!(signed_region(&HeaderMap::new()), None);
    }
}
