//! Cache parameter groups: the `default.*` groups of every family, user groups, and the
//! parameters in them.

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{ParameterGroupRecord, Scope, StoreError};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::{Operations, answered, internal, refuse, tags, validate, written};
use model::catalog::{Family, NodeTypeParameterDef, ParameterDef};

/// AWS's default quota of parameter groups per region.
const QUOTA: usize = 150;
/// ModifyCacheParameterGroup takes at most this many parameters per call.
const MAX_PARAMETERS_PER_CALL: usize = 20;

pub async fn seed_defaults(ops: &Operations, scope: &Scope) -> Result<(), ApiError> {
    let mut groups = Vec::new();
    for family in ops.catalog.families() {
        let name = &family.family;
        groups.push(ParameterGroupRecord {
            name: format!("default.{name}"),
            family: name.clone(),
            description: format!("Default parameter group for {name}"),
            is_default: true,
        });
        if family.has_cluster_mode() {
            groups.push(ParameterGroupRecord {
                name: format!("default.{name}.cluster.on"),
                family: name.clone(),
                description: format!("Customized default parameter group for {name} with cluster mode on"),
                is_default: true,
            });
        }
    }
    ops.store.ensure_default_parameter_groups(scope, &groups).await.map_err(internal)
}

fn output(scope: &Scope, group: &ParameterGroupRecord) -> CacheParameterGroup {
    CacheParameterGroup {
        arn: Some(arn::build(scope, Kind::ParameterGroup, &group.name)),
        cache_parameter_group_family: Some(group.family.clone()),
        cache_parameter_group_name: Some(group.name.clone()),
        description: Some(group.description.clone()),
        is_global: Some(false),
    }
}

fn not_found(name: &str) -> ApiError {
    Kind::ParameterGroup.not_found(name)
}

async fn existing(ops: &Operations, scope: &Scope, name: &str) -> Result<ParameterGroupRecord, ApiError> {
    ops.store.parameter_group(scope, &name.to_ascii_lowercase()).await.map_err(internal)?.ok_or_else(|| not_found(name))
}

/// The group's family from the catalog; every stored group has one.
fn family_of<'a>(ops: &'a Operations, group: &ParameterGroupRecord) -> Result<&'a Family, ApiError> {
    ops.catalog
        .family(&group.family)
        .ok_or_else(|| ApiError::internal(format!("unknown family {} of group {}", group.family, group.name)))
}

fn invalid_family(family: &str, ops: &Operations) -> ApiError {
    let known: Vec<&str> = ops.catalog.family_names().collect();
    ApiError::invalid_parameter_value(format!(
        "The parameter CacheParameterGroupFamily is not a valid family: {family}. Valid families: {}.",
        known.join(", ")
    ))
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateCacheParameterGroupMessage,
) -> Result<CreateCacheParameterGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    validate::group_name("CacheParameterGroupName", &input.cache_parameter_group_name)?;
    validate::description_length("Description", &input.description)?;
    let family = ops
        .catalog
        .family(&input.cache_parameter_group_family)
        .ok_or_else(|| invalid_family(&input.cache_parameter_group_family, ops))?;
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let group = ParameterGroupRecord {
        name: input.cache_parameter_group_name.to_ascii_lowercase(),
        family: family.family.clone(),
        description: input.description,
        is_default: false,
    };
    let arn = arn::build(&scope, Kind::ParameterGroup, &group.name);
    ops.store.create_parameter_group(&scope, &group, &arn, &tags, QUOTA).await.map_err(|e| match e {
        StoreError::AlreadyExists => crate::messages::parameter_group_already_exists(&group.name),
        StoreError::QuotaExceeded(quota) => ApiError::new(
            ErrorCode::CacheParameterGroupQuotaExceededFault,
            format!("The maximum number of cache parameter groups ({quota}) has been reached."),
        ),
        e => internal(e),
    })?;
    tracing::info!(parameter_group = group.name, region = scope.region, "created cache parameter group");
    Ok(CreateCacheParameterGroupResult { cache_parameter_group: Some(output(&scope, &group)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheParameterGroupsMessage,
) -> Result<CacheParameterGroupsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let groups = match &input.cache_parameter_group_name {
        Some(name) => vec![existing(ops, &scope, name).await?],
        None => ops.store.parameter_groups(&scope).await.map_err(internal)?,
    };
    let page = paginate(groups, |g| g.name.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(CacheParameterGroupsMessage {
        cache_parameter_groups: Some(page.items.iter().map(|g| output(&scope, g)).collect()),
        marker: page.marker,
    })
}

fn parameter(def: &ParameterDef, value: Option<&str>, source: &str) -> Parameter {
    Parameter {
        allowed_values: def.allowed_values.clone(),
        change_type: ChangeType::from_wire(&def.change_type),
        data_type: Some(def.data_type.clone()),
        description: Some(def.description.clone()),
        is_modifiable: Some(def.modifiable),
        minimum_engine_version: Some(def.minimum_engine_version.clone()),
        parameter_name: Some(def.name.clone()),
        parameter_value: value.map(str::to_string),
        source: Some(source.to_string()),
    }
}

fn node_type_parameter(def: &NodeTypeParameterDef) -> CacheNodeTypeSpecificParameter {
    CacheNodeTypeSpecificParameter {
        allowed_values: def.allowed_values.clone(),
        cache_node_type_specific_values: Some(
            def.values
                .iter()
                .map(|(node_type, value)| CacheNodeTypeSpecificValue {
                    cache_node_type: Some(node_type.clone()),
                    value: Some(value.clone()),
                })
                .collect(),
        ),
        change_type: ChangeType::from_wire(&def.change_type),
        data_type: Some(def.data_type.clone()),
        description: Some(def.description.clone()),
        is_modifiable: Some(def.modifiable),
        minimum_engine_version: Some(def.minimum_engine_version.clone()),
        parameter_name: Some(def.name.clone()),
        source: Some("system".to_string()),
    }
}

/// A parameter listing in one paginated sequence: ordinary parameters, then node-type
/// specific ones.
enum Listed {
    Plain(Parameter),
    NodeTypeSpecific(CacheNodeTypeSpecificParameter),
}

impl Listed {
    fn key(&self, index: usize) -> String {
        crate::pagination::position_key(index)
            + match self {
                Listed::Plain(p) => p.parameter_name.as_deref().unwrap_or(""),
                Listed::NodeTypeSpecific(p) => p.parameter_name.as_deref().unwrap_or(""),
            }
    }
}

type Split = (Vec<Parameter>, Vec<CacheNodeTypeSpecificParameter>, Option<String>);

fn paginate_listing(listed: Vec<Listed>, marker: Option<&str>, max_records: Option<i32>) -> Result<Split, ApiError> {
    let keyed: Vec<(String, Listed)> = listed.into_iter().enumerate().map(|(i, l)| (l.key(i), l)).collect();
    let page = paginate(keyed, |(key, _)| key.clone(), marker, max_records)?;
    let (mut plain, mut specific) = (Vec::new(), Vec::new());
    for (_, item) in page.items {
        match item {
            Listed::Plain(p) => plain.push(p),
            Listed::NodeTypeSpecific(p) => specific.push(p),
        }
    }
    Ok((plain, specific, page.marker))
}

pub async fn describe_parameters(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeCacheParametersMessage,
) -> Result<CacheParameterGroupDetails, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = existing(ops, &scope, &input.cache_parameter_group_name).await?;
    let family = family_of(ops, &group)?;
    let wanted = match input.source.as_deref() {
        None => None,
        Some(source @ ("user" | "system" | "engine-default")) => Some(source),
        Some(other) => {
            return Err(ApiError::invalid_parameter_value(format!(
                "Invalid value {other} for Source. Valid values: user, system, engine-default."
            )));
        }
    };
    let mut overrides = model::parameters::built_in_values(&group.name, group.is_default);
    overrides.extend(ops.store.parameter_values(&scope, &group.name).await.map_err(internal)?);
    let user_set = |name: &str| overrides.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut listed = Vec::new();
    for def in &family.parameters {
        let (value, source) = match user_set(&def.name) {
            Some(value) => (Some(value), "user"),
            None => (def.value.as_deref(), "system"),
        };
        let include = match wanted {
            None => true,
            Some("user") => source == "user",
            Some(_) => source == "system",
        };
        if include {
            listed.push(Listed::Plain(parameter(def, value, source)));
        }
    }
    if wanted != Some("user") {
        listed.extend(
            family.node_type_specific_parameters.iter().map(|d| Listed::NodeTypeSpecific(node_type_parameter(d))),
        );
    }
    let (parameters, specific, marker) = paginate_listing(listed, input.marker.as_deref(), input.max_records)?;
    Ok(CacheParameterGroupDetails {
        cache_node_type_specific_parameters: Some(specific),
        marker,
        parameters: Some(parameters),
    })
}

pub async fn describe_engine_defaults(
    ops: &Operations,
    _ctx: &RequestContext,
    input: DescribeEngineDefaultParametersMessage,
) -> Result<DescribeEngineDefaultParametersResult, ApiError> {
    let family = ops
        .catalog
        .family(&input.cache_parameter_group_family)
        .ok_or_else(|| invalid_family(&input.cache_parameter_group_family, ops))?;
    let mut listed: Vec<Listed> =
        family.parameters.iter().map(|d| Listed::Plain(parameter(d, d.value.as_deref(), "system"))).collect();
    listed
        .extend(family.node_type_specific_parameters.iter().map(|d| Listed::NodeTypeSpecific(node_type_parameter(d))));
    let (parameters, specific, marker) = paginate_listing(listed, input.marker.as_deref(), input.max_records)?;
    Ok(DescribeEngineDefaultParametersResult {
        engine_defaults: Some(EngineDefaults {
            cache_node_type_specific_parameters: Some(specific),
            cache_parameter_group_family: Some(family.family.clone()),
            marker,
            parameters: Some(parameters),
        }),
    })
}

/// A user-modifiable group: exists and is not one of AWS's defaults.
async fn modifiable(ops: &Operations, scope: &Scope, name: &str, verb: &str) -> Result<ParameterGroupRecord, ApiError> {
    let group = existing(ops, scope, name).await?;
    if group.is_default {
        return Err(ApiError::invalid_parameter_value(format!(
            "Cannot {verb} a default parameter group: {}.",
            group.name
        )));
    }
    Ok(group)
}

/// The definition of a parameter a user names, looked up case-insensitively.
fn definition<'a>(family: &'a Family, name: &str) -> Result<&'a ParameterDef, ApiError> {
    let name = name.to_ascii_lowercase();
    family.parameter(&name).ok_or_else(|| ApiError::invalid_parameter_value(format!("Parameter {name} doesn't exist")))
}

pub async fn modify(
    ops: &Operations,
    ctx: &RequestContext,
    input: ModifyCacheParameterGroupMessage,
) -> Result<CacheParameterGroupNameMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = modifiable(ops, &scope, &input.cache_parameter_group_name, "modify").await?;
    let family = family_of(ops, &group)?;
    let changes = &input.parameter_name_values;
    if changes.is_empty() {
        return Err(ApiError::invalid_parameter_value(
            "At least one parameter must be provided in ParameterNameValues.",
        ));
    }
    if changes.len() > MAX_PARAMETERS_PER_CALL {
        return Err(ApiError::invalid_parameter_combination(format!(
            "Cannot modify more than {MAX_PARAMETERS_PER_CALL} parameters in a single request"
        )));
    }
    let mut values = Vec::new();
    for change in changes {
        let name = change.parameter_name.as_deref().unwrap_or_default();
        if family.is_node_type_specific(&name.to_ascii_lowercase()) {
            return Err(ApiError::invalid_parameter_value(format!("Parameter {name} is not modifiable.")));
        }
        let def = definition(family, name)?;
        if !def.modifiable {
            return Err(ApiError::invalid_parameter_value(format!("Parameter {} is not modifiable.", def.name)));
        }
        let value = change.parameter_value.as_deref().ok_or_else(|| {
            ApiError::invalid_parameter_value(format!("A value must be provided for parameter {}.", def.name))
        })?;
        check_value(def, value)?;
        values.push((def.name.clone(), value.to_string()));
    }
    ops.store.set_parameter_values(&scope, &group.name, &values).await.map_err(|e| match e {
        StoreError::NotFound => not_found(&group.name),
        e => internal(e),
    })?;
    tracing::info!(parameter_group = group.name, parameters = values.len(), "modified cache parameter group");
    // Clusters using the group pick the change up from the reconciler.
    ops.reconcile_everything();
    Ok(CacheParameterGroupNameMessage { cache_parameter_group_name: Some(group.name) })
}

/// Checks a value against the parameter's data type and AllowedValues: a comma-separated
/// list of values or ranges (`1-100000`, `0-`).
fn check_value(def: &ParameterDef, value: &str) -> Result<(), ApiError> {
    let invalid = || {
        ApiError::invalid_parameter_value(format!(
            "Value ({value}) for parameter {} is invalid. Allowed values: {}.",
            def.name,
            def.allowed_values.as_deref().unwrap_or(&def.data_type)
        ))
    };
    if def.data_type == "integer" && value.trim().parse::<i64>().is_err() {
        return Err(invalid());
    }
    let Some(allowed) = def.allowed_values.as_deref() else { return Ok(()) };
    let items: Vec<&str> = allowed.split(',').map(str::trim).collect();
    // Free-form descriptions of allowed values (e.g. a pattern) cannot be checked.
    if items.iter().any(|i| i.contains(' ')) {
        return Ok(());
    }
    let number = value.trim().parse::<i64>().ok();
    let matches = items.iter().any(|item| {
        if *item == value {
            return true;
        }
        match (number, range(item)) {
            (Some(n), Some((min, max))) => n >= min && max.is_none_or(|max| n <= max),
            _ => false,
        }
    });
    if matches { Ok(()) } else { Err(invalid()) }
}

/// `1-100000` → (1, Some(100000)); `0-` → (0, None); `-1-5` → (-1, Some(5)).
fn range(item: &str) -> Option<(i64, Option<i64>)> {
    let split = item.char_indices().skip(1).find(|(_, c)| *c == '-')?.0;
    let min = item[..split].parse().ok()?;
    let max = &item[split + 1..];
    if max.is_empty() { Some((min, None)) } else { Some((min, Some(max.parse().ok()?))) }
}

pub async fn reset(
    ops: &Operations,
    ctx: &RequestContext,
    input: ResetCacheParameterGroupMessage,
) -> Result<CacheParameterGroupNameMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = modifiable(ops, &scope, &input.cache_parameter_group_name, "reset").await?;
    let family = family_of(ops, &group)?;
    let all = input.reset_all_parameters.unwrap_or(false);
    let named = input.parameter_name_values.unwrap_or_default();
    let names = match (all, named.is_empty()) {
        (true, false) => {
            return Err(ApiError::invalid_parameter_combination(
                "ResetAllParameters and ParameterNameValues cannot be specified together.",
            ));
        }
        (false, true) => {
            return Err(ApiError::invalid_parameter_combination(
                "Either ResetAllParameters must be true or ParameterNameValues must list the parameters to reset.",
            ));
        }
        (true, true) => None,
        (false, false) => Some(
            named
                .iter()
                .map(|p| definition(family, p.parameter_name.as_deref().unwrap_or_default()).map(|d| d.name.clone()))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    ops.store.reset_parameter_values(&scope, &group.name, names.as_deref()).await.map_err(internal)?;
    tracing::info!(parameter_group = group.name, "reset cache parameter group");
    ops.reconcile_everything();
    Ok(CacheParameterGroupNameMessage { cache_parameter_group_name: Some(group.name) })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteCacheParameterGroupMessage,
) -> Result<(), ApiError> {
    let scope = ops.scope(ctx).await?;
    let group = existing(ops, &scope, &input.cache_parameter_group_name).await?;
    if group.is_default {
        return Err(ApiError::new(
            ErrorCode::InvalidCacheParameterGroupStateFault,
            format!("Default CacheParameterGroup cannot be deleted: {}", group.name),
        ));
    }
    let arn = arn::build(&scope, Kind::ParameterGroup, &group.name);
    // The in-use check and the delete are one transaction: a create that uses the group
    // either comes first (and the delete is refused) or finds the group gone.
    written(
        ops.store
            .write(async |tx| {
                if tx.cache_clusters(&scope).await?.iter().any(|c| c.cluster.parameter_group == group.name) {
                    return refuse(ApiError::new(
                        ErrorCode::InvalidCacheParameterGroupStateFault,
                        format!(
                            "One or more cache clusters are still members of parameter group {}, so the group cannot be deleted.",
                            group.name
                        ),
                    ));
                }
                tx.delete_parameter_group(&scope, &group.name, &arn)
                    .await
                    .map_err(|e| answered(e, |e| matches!(e, StoreError::NotFound).then(|| not_found(&group.name))))
            })
            .await,
    )?;
    tracing::info!(parameter_group = group.name, "deleted cache parameter group");
    Ok(())
}

/// The values a node of a group runs with: the family's defaults, the default group's
/// built-in values, then what users set. Parameters without a value are left out.
pub async fn effective_values(ops: &Operations, scope: &Scope, name: &str) -> Result<Vec<(String, String)>, ApiError> {
    // One read: every stored group has a family of the catalog, so None is a missing group.
    let values = ops.store.effective_parameters(scope, &name.to_ascii_lowercase(), &ops.catalog).await;
    values.map_err(internal)?.ok_or_else(|| not_found(name))
}

/// Whether a parameter group of this name exists in the scope (for tagging).
pub async fn exists(ops: &Operations, scope: &Scope, name: &str) -> Result<bool, ApiError> {
    Ok(ops.store.parameter_group(scope, name).await.map_err(internal)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(data_type: &str, allowed: &str) -> ParameterDef {
        ParameterDef {
            name: "p".into(),
            value: None,
            description: String::new(),
            data_type: data_type.into(),
            allowed_values: Some(allowed.into()),
            modifiable: true,
            minimum_engine_version: "7.0.0".into(),
            change_type: "immediate".into(),
        }
    }

    #[test]
    fn values_are_checked_against_allowed_values() {
        assert!(check_value(&def("string", "yes,no"), "yes").is_ok());
        assert!(check_value(&def("string", "yes,no"), "maybe").is_err());
        assert!(check_value(&def("integer", "0-"), "12345").is_ok());
        assert!(check_value(&def("integer", "0-"), "-1").is_err());
        assert!(check_value(&def("integer", "1-100"), "101").is_err());
        assert!(check_value(&def("integer", "1-100"), "abc").is_err());
        assert!(check_value(&def("integer", "-1-10"), "-1").is_ok());
    }
}
