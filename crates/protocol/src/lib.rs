//! The wire layer of the ElastiCache API: AWS Query requests in, AWS XML responses out.
//!
//! # Layout
//! - [`query`]: the form-encoded request (`Action=...&Tags.Tag.1.Key=...`) and [`FromQuery`],
//!   which decodes every input shape from it.
//! - [`xml`]: [`XmlWriter`] and [`ToXml`], which encode output shapes, and the response and
//!   error envelopes.
//! - [`error`]: [`ApiError`], the one error type an operation answers with.
//! - [`sigv4`]: the AWS Signature Version 4 check of a request (strict mode) and its signer.
//! - [`generated`]: shapes, codecs, error codes and the [`ElastiCache`] service trait, all
//!   generated from `api-specs/` by the `codegen` crate. Never edit by hand.
//!
//! Semantics live elsewhere (the `operations` crate): this crate only knows the model.

pub mod error;
#[rustfmt::skip]
pub mod generated;
pub mod query;
pub mod sigv4;
pub mod xml;

pub use error::{ApiError, ErrorCode};
pub use generated::service::{ElastiCache, OPERATIONS, dispatch};
pub use generated::shapes;
pub use query::{FromQuery, QueryParams};
pub use xml::{ToXml, XmlWriter};

/// Who is asking, where: every resource lives in one region of one account.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub region: String,
    pub account: String,
}

/// XML namespace of every response, from the model's metadata.
pub const XML_NAMESPACE: &str = "http://elasticache.amazonaws.com/doc/2015-02-02/";
/// The only API version the model describes.
pub const API_VERSION: &str = "2015-02-02";
