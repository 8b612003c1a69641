//! AWS's own wording for the errors clients match on: one function per message, each naming
//! where the wording is on record (a real answer quoted in a public issue, or code that
//! matches on it). Messages with no such record are written where they are used, in the
//! emulator's own words. (One lives in `protocol`, because the decoder answers it too:
//! `ApiError::authentication_type_not_allowed`.)

use protocol::{ApiError, ErrorCode};

/// terraform-provider-aws#24273 quotes this answer to CreateUser.
pub fn password_length() -> ApiError {
    ApiError::invalid_parameter_value("Passwords length must be between 16-128 characters.")
}

// CreateUser's authentication rules below: moto's ElastiCache backend and its tests
// (getmoto/moto `moto/elasticache/models.py`, `tests/test_elasticache`) answer with these
// words, and a CloudFormation policy pack quotes the first two as what "the create call
// fails with"; no AWS answer quoted in a public issue was found.

/// Passwords given with an authentication type that takes none (iam, no-password-required).
pub fn passwords_not_allowed(kind: &str) -> ApiError {
    ApiError::invalid_parameter_combination(format!("Password field is not allowed with authentication type: {kind}"))
}

/// More than two passwords.
pub fn too_many_passwords() -> ApiError {
    ApiError::invalid_parameter_value("Maximum number of passwords allowed in this service is 2.")
}

/// NoPasswordRequired=true with an authentication type that is not no-password-required.
pub fn no_password_flag_with(kind: &str) -> ApiError {
    ApiError::invalid_parameter_combination(format!(
        "No password required flag is true but provided authentication type is {kind}"
    ))
}

/// Authentication type password without a password.
pub fn password_type_without_password() -> ApiError {
    ApiError::invalid_parameter_combination(
        "A user with Authentication Mode: password, must have at least one password",
    )
}

/// Passwords both in Passwords and in AuthenticationMode.Passwords.
pub fn passwords_in_two_places() -> ApiError {
    ApiError::invalid_parameter_combination("Passwords provided via multiple arguments. Use only one argument")
}

/// DeleteCacheCluster on a group's primary (rebuy-de/aws-nuke#273). The Terraform provider
/// stops retrying a delete when the message says "serving as primary".
pub fn serving_as_primary(cluster: &str, group: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCacheClusterStateFault,
        format!(
            "Cache cluster {cluster} is serving as primary for replication group {group} and cannot be deleted. To delete the entire replication group, use DeleteReplicationGroup."
        ),
    )
}

/// DeleteCacheCluster on a group's only member (gruntwork-io/cloud-nuke#333,
/// terraform-provider-aws#17647); the provider matches "only member of a replication group".
pub fn only_member() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCacheClusterStateFault,
        "Cannot delete the cache cluster since it is the only member of a replication group. Delete the replication group instead.",
    )
}

/// DeleteCacheCluster on the last replica of a group with automatic failover
/// (rebuy-de/aws-nuke#289).
pub fn only_read_replica(group: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCacheClusterStateFault,
        format!(
            "Cannot delete the cache cluster because it is the only read replica for replication group {group} which has autofailover enabled or pending. You can disable autofailover and then delete this cache cluster. Alternatively, to delete the entire replication group, use DeleteReplicationGroup."
        ),
    )
}

/// alantech/iasql#1684 quotes this answer to CreateCacheCluster.
pub fn cache_node_type_required() -> ApiError {
    ApiError::invalid_parameter_value("The parameter CacheNodeType must be provided and must not be null.")
}

/// hashicorp/terraform#2534 and cloudposse/terraform-aws-elasticache-memcached#10 quote it.
pub fn subnet_ids_required() -> ApiError {
    ApiError::invalid_parameter_value("The parameter SubnetIds must be provided.")
}

/// A create (or a delete) naming a subnet group that does not exist: a Terraform log quotes
/// `Cache Subnet Group main does not exist.` for CreateReplicationGroup.
pub fn subnet_group_does_not_exist(name: &str) -> ApiError {
    ApiError::new(ErrorCode::CacheSubnetGroupNotFoundFault, format!("Cache Subnet Group {name} does not exist."))
}

/// Describe and Modify of a subnet group that does not exist. Taken from floci (another
/// emulator whose messages say they come from a live account); no public AWS answer found.
pub fn subnet_group_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::CacheSubnetGroupNotFoundFault, format!("Cache subnet group {name} not found."))
}

/// A real log quotes `Parameter group kong-dev already exists`, with no period.
pub fn parameter_group_already_exists(name: &str) -> ApiError {
    ApiError::new(ErrorCode::CacheParameterGroupAlreadyExistsFault, format!("Parameter group {name} already exists"))
}

/// crossplane-contrib/provider-jet-aws#195 and pulumi/pulumi-aws#426 quote it.
pub fn replication_group_already_exists() -> ApiError {
    ApiError::new(
        ErrorCode::ReplicationGroupAlreadyExistsFault,
        "Replication group with specified name already exists.",
    )
}

/// ekristen/aws-nuke#208 and boto/boto3#1876 quote it (InvalidARN).
pub fn arn_without_seven_components() -> ApiError {
    ApiError::new(ErrorCode::InvalidARNFault, "Input ARN string does not have 7 components.")
}

/// An ARN of another account. From floci (messages "taken from a live account"); no public
/// AWS answer found.
pub fn arn_of_another_account() -> ApiError {
    ApiError::invalid_parameter_value("The resource ARN does not belong to the caller's account.")
}

/// Tagging (or listing the tags of) a replication group that is not available:
/// terraform-provider-aws#30444, #31819 and #41416 quote this answer to
/// ListTagsForResource; the provider retries on it.
pub fn group_not_available_for_tagging() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReplicationGroupStateFault,
        "Cluster not in available state to perform tagging operations.",
    )
}
