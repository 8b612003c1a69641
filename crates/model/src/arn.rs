//! ElastiCache ARNs: `arn:aws:elasticache:<region>:<account>:<kind>:<name>`.

use crate::Scope;

/// The resource kinds an ARN can name, as they appear in the ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    ReplicationGroup,
    ParameterGroup,
    SubnetGroup,
    SecurityGroup,
    Snapshot,
    User,
    UserGroup,
    ServerlessCache,
    ServerlessCacheSnapshot,
    ReservedInstance,
    /// A global datastore: its ARN names no region (it spans several).
    GlobalReplicationGroup,
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::Cluster,
        Kind::ReplicationGroup,
        Kind::ParameterGroup,
        Kind::SubnetGroup,
        Kind::SecurityGroup,
        Kind::Snapshot,
        Kind::User,
        Kind::UserGroup,
        Kind::ServerlessCache,
        Kind::ServerlessCacheSnapshot,
        Kind::ReservedInstance,
        Kind::GlobalReplicationGroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::ReplicationGroup => "replicationgroup",
            Kind::ParameterGroup => "parametergroup",
            Kind::SubnetGroup => "subnetgroup",
            Kind::SecurityGroup => "securitygroup",
            Kind::Snapshot => "snapshot",
            Kind::User => "user",
            Kind::UserGroup => "usergroup",
            Kind::ServerlessCache => "serverlesscache",
            Kind::ServerlessCacheSnapshot => "serverlesscachesnapshot",
            Kind::ReservedInstance => "reserved-instance",
            Kind::GlobalReplicationGroup => "globalreplicationgroup",
        }
    }
}

pub fn build(scope: &Scope, kind: Kind, name: &str) -> String {
    format!("arn:aws:elasticache:{}:{}:{}:{name}", scope.region, scope.account, kind.as_str())
}

/// A global datastore's ARN, with no region (the Terraform provider's tests read it as
/// `arn:aws:elasticache::<account>:globalreplicationgroup:<id>`).
pub fn build_global(account: &str, id: &str) -> String {
    format!("arn:aws:elasticache::{account}:{}:{id}", Kind::GlobalReplicationGroup.as_str())
}

/// A parsed ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub region: String,
    pub account: String,
    pub kind: Kind,
    pub name: String,
}

/// Text that is no ElastiCache ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnArn;

impl Arn {
    pub fn parse(text: &str) -> Result<Self, NotAnArn> {
        let parts: Vec<&str> = text.splitn(7, ':').collect();
        let [prefix, partition, service, region, account, kind, name] = parts[..] else {
            return Err(NotAnArn);
        };
        if prefix != "arn" || !partition.starts_with("aws") || service != "elasticache" {
            return Err(NotAnArn);
        }
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or(NotAnArn)?;
        let regionless = kind == Kind::GlobalReplicationGroup;
        if region.is_empty() != regionless || account.is_empty() || name.is_empty() {
            return Err(NotAnArn);
        }
        Ok(Self { region: region.to_string(), account: account.to_string(), kind, name: name.to_string() })
    }

    /// Whether the ARN names a resource in `scope`; one in another region or account
    /// cannot exist here.
    pub fn is_in(&self, scope: &Scope) -> bool {
        (self.region == scope.region || self.kind == Kind::GlobalReplicationGroup) && self.account == scope.account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let scope = Scope { region: "us-east-1".into(), account: "000000000000".into() };
        let text = build(&scope, Kind::ParameterGroup, "my-group");
        assert_eq!(text, "arn:aws:elasticache:us-east-1:000000000000:parametergroup:my-group");
        let arn = Arn::parse(&text).expect("valid");
        assert_eq!(arn.kind, Kind::ParameterGroup);
        assert_eq!(arn.name, "my-group");
        assert!(arn.is_in(&scope));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "arn:aws:s3:::bucket",
            "arn:aws:elasticache:us-east-1:1:nothing:x",
            "arn:aws:elasticache:us-east-1:1:cluster:",
        ] {
            assert_eq!(Arn::parse(bad), Err(NotAnArn), "{bad}");
        }
    }
}
