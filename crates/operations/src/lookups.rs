//! What a request refers to, looked up with AWS's errors: engine versions and node types in
//! the catalog, parameter and subnet groups in the store.

use model::catalog::EngineVersion;
use protocol::ApiError;
use store::Scope;

use crate::arn::{Kind, NotFound as _};
use crate::{Operations, internal};

impl Operations {
    /// The offered version an engine version request names: exact, or a prefix
    /// (`7` → newest 7.x); none means the newest.
    pub(crate) fn engine_version<'a>(
        &'a self,
        engine: &'a str,
        requested: Option<&str>,
    ) -> Result<&'a EngineVersion, ApiError> {
        let mut versions = self.catalog.versions_of(engine).collect::<Vec<_>>();
        versions.reverse();
        let found = match requested {
            None => versions.first().copied(),
            Some(v) => versions
                .iter()
                .find(|o| o.engine_version == v)
                .or_else(|| versions.iter().find(|o| o.engine_version.starts_with(&format!("{v}."))))
                .or_else(|| versions.iter().find(|o| v.starts_with(&format!("{}.", o.engine_version))))
                .copied(),
        };
        found.ok_or_else(|| {
            ApiError::invalid_parameter_value(format!(
                "Cannot find version {} for {engine}",
                requested.unwrap_or("(default)")
            ))
        })
    }

    pub(crate) fn check_node_type(&self, node_type: &str) -> Result<(), ApiError> {
        match self.catalog.node_type(node_type) {
            Some(_) => Ok(()),
            None => Err(ApiError::invalid_parameter_value(format!("Invalid Cache Node Type: {node_type}"))),
        }
    }

    /// A parameter group that exists and belongs to `family`.
    pub(crate) async fn parameter_group_for(
        &self,
        scope: &Scope,
        name: Option<&str>,
        family: &str,
    ) -> Result<String, ApiError> {
        let name = name.map_or_else(|| format!("default.{family}"), str::to_ascii_lowercase);
        let group = self
            .store
            .parameter_group(scope, &name)
            .await
            .map_err(internal)?
            .ok_or_else(|| Kind::ParameterGroup.not_found(&name))?;
        if group.family != family {
            return Err(ApiError::invalid_parameter_combination(format!(
                "Expected a parameter group of family {family} but found one of family {}",
                group.family
            )));
        }
        Ok(group.name)
    }

    /// The zones a subnet group spans, in order.
    pub(crate) async fn subnet_group_zones(&self, scope: &Scope, name: &str) -> Result<Vec<String>, ApiError> {
        let group = self
            .store
            .subnet_group(scope, name)
            .await
            .map_err(internal)?
            .ok_or_else(|| Kind::SubnetGroup.not_found(name))?;
        let mut zones: Vec<String> = Vec::new();
        for subnet in group.subnets {
            if !zones.contains(&subnet.availability_zone) {
                zones.push(subnet.availability_zone);
            }
        }
        Ok(zones)
    }
}
