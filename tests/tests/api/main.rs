//! Control-plane API tests through `aws-sdk-elasticache` (and raw HTTP for the wire format),
//! each against its own in-process server. One test binary keeps linking cheap.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod admin;
mod aws_messages;
mod engine_versions;
mod fuzz;
mod hostile;
mod init_scripts;
mod pagination_regions;
mod parameter_groups;
mod protocol;
mod reserved_nodes;
mod security_groups;
mod service_updates;
mod slow_clients;
mod subnet_groups;
mod tags;
mod terraform;

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{CacheParameterGroup, Parameter, ParameterNameValue, Tag};

pub fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

pub fn pnv(name: &str, value: &str) -> ParameterNameValue {
    ParameterNameValue::builder().parameter_name(name).parameter_value(value).build()
}

pub async fn create_pg(client: &Client, name: &str, family: &str) -> CacheParameterGroup {
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name(name)
        .cache_parameter_group_family(family)
        .description(format!("e2e {name}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating parameter group {name}: {e:?}"))
        .cache_parameter_group
        .expect("CreateCacheParameterGroup returned no CacheParameterGroup")
}

/// Every parameter group name, all pages.
pub async fn all_pg_names(client: &Client) -> Vec<String> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_cache_parameter_groups()
            .set_marker(marker)
            .send()
            .await
            .expect("DescribeCacheParameterGroups");
        names.extend(out.cache_parameter_groups().iter().filter_map(|g| g.cache_parameter_group_name.clone()));
        marker = out.marker;
        if marker.is_none() {
            return names;
        }
    }
}

/// Every parameter of a group (optionally filtered by Source), all pages.
pub async fn all_params(client: &Client, group: &str, source: Option<&str>) -> Vec<Parameter> {
    let mut params = Vec::new();
    let mut marker = None;
    loop {
        let out = client
            .describe_cache_parameters()
            .cache_parameter_group_name(group)
            .set_source(source.map(str::to_string))
            .set_marker(marker)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeCacheParameters {group}: {e:?}"));
        params.extend(out.parameters().iter().cloned());
        marker = out.marker;
        if marker.is_none() {
            return params;
        }
    }
}

pub fn value_of<'a>(params: &'a [Parameter], name: &str) -> Option<&'a str> {
    params.iter().find(|p| p.parameter_name() == Some(name)).and_then(|p| p.parameter_value())
}
