//! Where new nodes go: AWS's zone rules (requested zones, single-az, cross-az spread over a
//! subnet group's zones).

use protocol::ApiError;
use store::{CacheNodeRecord, Scope, now_millis};

use crate::Operations;
use model::names::node_id;

use crate::cache_clusters::status;

/// Zones for `count` new nodes: the requested ones, else spread (cross-az) or packed
/// (single-az) over the subnet group's zones, starting after the nodes already placed.
pub(crate) fn place(
    count: usize,
    requested: &[String],
    az_mode: &str,
    zones: &[String],
    existing: &[CacheNodeRecord],
) -> Vec<String> {
    if !requested.is_empty() {
        return (0..count).map(|i| requested[i % requested.len()].clone()).collect();
    }
    if az_mode != "cross-az" {
        let zone = existing.first().map(|n| n.zone.clone()).or_else(|| zones.first().cloned()).unwrap_or_default();
        return vec![zone; count];
    }
    // Each new node goes to the least used zone, so nodes stay spread as the cluster grows.
    let mut placed: Vec<String> = existing.iter().map(|n| n.zone.clone()).collect();
    (0..count)
        .map(|_| {
            let zone =
                zones.iter().min_by_key(|z| placed.iter().filter(|p| p == z).count()).cloned().unwrap_or_default();
            placed.push(zone.clone());
            zone
        })
        .collect()
}

pub(crate) fn new_node(index: usize, zone: String) -> CacheNodeRecord {
    CacheNodeRecord {
        node_id: node_id(index),
        status: status::CREATING.to_string(),
        zone,
        address: "127.0.0.1".to_string(),
        port: 0,
        created_millis: now_millis(),
        parameter_status: status::IN_SYNC.to_string(),
        reboot_requested: false,
        recover_requested: false,
        remove_requested: false,
        applied_parameters: Vec::new(),
        applied_max_memory: 0,
        applied_transit_mode: String::new(),
        applied_auth: String::new(),
    }
}

pub(crate) fn check_zones(
    ops: &Operations,
    scope: &Scope,
    zones: &[String],
    allowed: &[String],
) -> Result<(), ApiError> {
    let region_zones = ops.zones(&scope.region);
    for zone in zones {
        if !region_zones.contains(zone) || !allowed.contains(zone) {
            return Err(ApiError::invalid_parameter_value(format!(
                "Invalid availability zone: {zone}. Valid zones: {}.",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}
