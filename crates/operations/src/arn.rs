//! ARNs as the API answers about them: the model's ARNs, with AWS's errors.

use protocol::{ApiError, ErrorCode};

pub use model::arn::{Arn, Kind, build};

/// The error AWS answers when a resource of this kind does not exist.
pub trait NotFound {
    fn not_found(self, name: &str) -> ApiError;
}

impl NotFound for Kind {
    fn not_found(self, name: &str) -> ApiError {
        let (code, what) = match self {
            Kind::Cluster => (ErrorCode::CacheClusterNotFoundFault, "CacheCluster"),
            Kind::ReplicationGroup => (ErrorCode::ReplicationGroupNotFoundFault, "ReplicationGroup"),
            Kind::ParameterGroup => (ErrorCode::CacheParameterGroupNotFoundFault, "CacheParameterGroup"),
            Kind::SubnetGroup => (ErrorCode::CacheSubnetGroupNotFoundFault, "CacheSubnetGroup"),
            Kind::SecurityGroup => (ErrorCode::CacheSecurityGroupNotFoundFault, "CacheSecurityGroup"),
            Kind::Snapshot => (ErrorCode::SnapshotNotFoundFault, "Snapshot"),
            Kind::User => (ErrorCode::UserNotFoundFault, "User"),
            Kind::UserGroup => (ErrorCode::UserGroupNotFoundFault, "UserGroup"),
            Kind::ServerlessCache => (ErrorCode::ServerlessCacheNotFoundFault, "ServerlessCache"),
            Kind::ServerlessCacheSnapshot => {
                (ErrorCode::ServerlessCacheSnapshotNotFoundFault, "ServerlessCacheSnapshot")
            }
            Kind::ReservedInstance => (ErrorCode::ReservedCacheNodeNotFoundFault, "ReservedCacheNode"),
            Kind::GlobalReplicationGroup => (ErrorCode::GlobalReplicationGroupNotFoundFault, "GlobalReplicationGroup"),
        };
        ApiError::new(code, format!("{what} not found: {name}"))
    }
}

/// `text` as an ARN, or AWS's InvalidARN fault.
pub fn parse(text: &str) -> Result<Arn, ApiError> {
    if text.split(':').count() < 7 {
        return Err(crate::messages::arn_without_seven_components());
    }
    Arn::parse(text).map_err(|_| ApiError::new(ErrorCode::InvalidARNFault, format!("The ARN {text} is not valid.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_arns_are_invalid_arn_faults() {
        assert_eq!(parse("arn:aws:s3:::bucket").unwrap_err().code, "InvalidARN");
        assert_eq!(Kind::Snapshot.not_found("s").code, "SnapshotNotFoundFault");
    }
}
