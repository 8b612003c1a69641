//! What a request refers to, looked up with AWS's errors: engine versions and node types in
//! the catalog, parameter and subnet groups in the store.

use model::catalog::EngineVersion;
use protocol::ApiError;
use store::Scope;

use crate::arn::{Kind, NotFound as _};

fn cannot_find(version: &str, engine: &str) -> ApiError {
    ApiError::invalid_parameter_combination(format!("Cannot find version {version} for {engine}"))
}

/// Whether `requested` is a patch version of a version listed as major.minor (`6.2.6` of `6.2`).
fn is_patch_of(requested: &str, listed: &str) -> bool {
    listed.split('.').count() == 2
        && requested
            .strip_prefix(listed)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|patch| !patch.is_empty() && patch.chars().all(|c| c.is_ascii_digit()))
}
use crate::{Operations, internal};

impl Operations {
    /// The offered version an engine version request names, resolved as AWS resolves it:
    /// exactly as listed, or `6.x` for the newest version of the `redis6.x` family; none
    /// means the newest. AWS's answers: `Cannot find version 7 for redis`
    /// (InvalidParameterCombination, quoted in terraform-provider-aws#32252 and
    /// ministryofjustice/cloud-platform-environments#5753), and for a patch version of a
    /// major.minor-listed version `Specific version selection is not allowed for '6.2.6',
    /// please use '6.2'` (InvalidParameterValue, crossplane-contrib/provider-aws#1617).
    pub(crate) fn engine_version<'a>(
        &'a self,
        engine: &'a str,
        requested: Option<&str>,
    ) -> Result<&'a EngineVersion, ApiError> {
        let mut newest_first: Vec<&EngineVersion> = self.catalog.versions_of(engine).collect();
        newest_first.reverse();
        let Some(requested) = requested else {
            return newest_first.first().copied().ok_or_else(|| cannot_find("(default)", engine));
        };
        if let Some(version) = newest_first.iter().copied().find(|v| v.engine_version == requested) {
            return Ok(version);
        }
        if let Some(major) = requested.strip_suffix(".x")
            && let Some(version) =
                newest_first.iter().copied().find(|v| v.cache_parameter_group_family == format!("{engine}{major}.x"))
        {
            return Ok(version);
        }
        if let Some(listed) = newest_first.iter().copied().find(|v| is_patch_of(requested, &v.engine_version)) {
            return Err(ApiError::invalid_parameter_value(format!(
                "Specific version selection is not allowed for '{requested}', please use '{}'",
                listed.engine_version
            )));
        }
        Err(cannot_find(requested, engine))
    }

    /// The offered version a stored cluster runs (see [`model::Catalog::recorded_version`]).
    pub(crate) fn recorded_version<'a>(&'a self, engine: &str, recorded: &str) -> Result<&'a EngineVersion, ApiError> {
        self.catalog.recorded_version(engine, recorded).ok_or_else(|| cannot_find(recorded, engine))
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
            .ok_or_else(|| crate::messages::subnet_group_does_not_exist(name))?;
        let mut zones: Vec<String> = Vec::new();
        for subnet in group.subnets {
            if !zones.contains(&subnet.availability_zone) {
                zones.push(subnet.availability_zone);
            }
        }
        Ok(zones)
    }
}
