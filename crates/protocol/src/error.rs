//! [`ApiError`]: what an operation answers when it fails, encoded as AWS's `<ErrorResponse>`.

use std::fmt;

pub use crate::generated::errors::ErrorCode;

/// An AWS-visible error: a code the SDKs map to an exception type, the HTTP status AWS
/// uses for it, and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub status: u16,
    pub sender_fault: bool,
    pub message: String,
}

impl ApiError {
    /// An error the model declares, with the code and status the model gives it.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.code(),
            status: code.http_status(),
            sender_fault: code.sender_fault(),
            message: message.into(),
        }
    }

    /// AWS's common Query errors, which the model does not list.
    fn common(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, sender_fault: status < 500, message: message.into() }
    }

    pub fn invalid_parameter_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValueException, message)
    }

    pub fn invalid_parameter_combination(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterCombinationException, message)
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::common("MissingParameter", 400, format!("The request must contain the parameter {name}"))
    }

    pub fn missing_action() -> Self {
        Self::common("MissingAction", 400, "The request must contain the parameter Action")
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::common("InvalidAction", 400, format!("The action {action} is not valid for this web service."))
    }

    pub fn invalid_version(version: &str) -> Self {
        Self::common("InvalidAction", 400, format!("Could not find operation for version {version}"))
    }

    /// A modelled operation whose semantics the emulator does not have yet. 501 is not
    /// retried by the SDKs, so clients fail fast with a message that names the operation.
    pub fn not_implemented(operation: &str) -> Self {
        Self::common("NotImplemented", 501, format!("ElastiCache Local does not implement {operation} yet"))
    }

    /// A signature (or its date) missing or malformed: AWS answers 400.
    pub fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::common("IncompleteSignature", 400, message)
    }

    /// An access key id the server does not know.
    pub fn invalid_client_token_id() -> Self {
        Self::common("InvalidClientTokenId", 403, "The security token included in the request is invalid.")
    }

    /// A wrong signature, a wrong credential scope, or a date too far from now.
    pub fn signature_does_not_match(message: impl Into<String>) -> Self {
        Self::common("SignatureDoesNotMatch", 403, message)
    }

    /// A request body past the server's limit.
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::common(
            "RequestEntityTooLarge",
            413,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// CreateUser's and ModifyUser's authentication type, missing (`null`) or unknown, in
    /// AWS's words (crossplane-contrib/provider-upjet-aws#151 quotes them for a missing one).
    pub fn authentication_type_not_allowed(given: &str) -> Self {
        Self::invalid_parameter_value(format!(
            "Input Authentication type: {given} is not in the allowed list: [password,no-password-required,iam]"
        ))
    }

    /// A body that did not arrive in time. The Query API's common errors have no code for
    /// this; S3's `RequestTimeout` is AWS's name for it.
    pub fn request_timeout() -> Self {
        Self::common(
            "RequestTimeout",
            408,
            "Your socket connection to the server was not read from or written to within the timeout period.",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::common("InternalFailure", 500, message)
    }

    /// AWS names the fault side in `<Type>`: `Sender` for client errors, `Receiver` otherwise.
    pub fn fault_type(&self) -> &'static str {
        if self.sender_fault { "Sender" } else { "Receiver" }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
