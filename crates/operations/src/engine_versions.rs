//! DescribeCacheEngineVersions over the catalog.

use protocol::ApiError;
use protocol::shapes::*;

use crate::Operations;
use crate::pagination::{paginate, position_key};
use model::catalog::EngineVersion;

pub fn describe(
    ops: &Operations,
    input: DescribeCacheEngineVersionsMessage,
) -> Result<CacheEngineVersionMessage, ApiError> {
    let all = ops.catalog.engine_versions();
    // The default version of an engine is its newest.
    let is_default =
        |v: &EngineVersion| all.iter().rev().find(|o| o.engine == v.engine).is_some_and(|d| std::ptr::eq(d, v));
    let matching: Vec<(usize, &EngineVersion)> = all
        .iter()
        .enumerate()
        .filter(|(_, v)| input.engine.as_ref().is_none_or(|e| e.eq_ignore_ascii_case(&v.engine)))
        .filter(|(_, v)| input.engine_version.as_ref().is_none_or(|e| *e == v.engine_version))
        .filter(|(_, v)| {
            input.cache_parameter_group_family.as_ref().is_none_or(|f| *f == v.cache_parameter_group_family)
        })
        .filter(|(_, v)| !input.default_only.unwrap_or(false) || is_default(v))
        .collect();
    let page = paginate(matching, |(i, _)| position_key(*i), input.marker.as_deref(), input.max_records)?;
    Ok(CacheEngineVersionMessage {
        cache_engine_versions: Some(
            page.items
                .into_iter()
                .map(|(_, v)| CacheEngineVersion {
                    cache_engine_description: Some(v.cache_engine_description.clone()),
                    cache_engine_version_description: Some(v.cache_engine_version_description.clone()),
                    cache_parameter_group_family: Some(v.cache_parameter_group_family.clone()),
                    engine: Some(v.engine.clone()),
                    engine_version: Some(v.engine_version.clone()),
                })
                .collect(),
        ),
        marker: page.marker,
    })
}
