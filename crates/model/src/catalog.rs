//! What AWS offers: engine versions, parameter group families with their parameters, and
//! node types. Read from `data/` (see its README for provenance) and compiled in.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ParameterDef {
    pub name: String,
    pub value: Option<String>,
    pub description: String,
    pub data_type: String,
    pub allowed_values: Option<String>,
    pub modifiable: bool,
    pub minimum_engine_version: String,
    pub change_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeTypeParameterDef {
    pub name: String,
    pub description: String,
    pub data_type: String,
    pub allowed_values: Option<String>,
    pub modifiable: bool,
    pub minimum_engine_version: String,
    pub change_type: String,
    pub values: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    pub family: String,
    pub parameters: Vec<ParameterDef>,
    pub node_type_specific_parameters: Vec<NodeTypeParameterDef>,
}

impl Family {
    pub fn parameter(&self, name: &str) -> Option<&ParameterDef> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Whether a name is a node-type-specific parameter (never modifiable by users).
    pub fn is_node_type_specific(&self, name: &str) -> bool {
        self.node_type_specific_parameters.iter().any(|p| p.name == name)
    }

    /// Redis and Valkey families have cluster-mode variants of their default group.
    pub fn has_cluster_mode(&self) -> bool {
        !self.family.starts_with("memcached")
    }
}

/// Whether engine version `to` is older than `from`, comparing the numbers in order
/// (`1.6.12` is newer than `1.6.6`).
pub fn is_downgrade(from: &str, to: &str) -> bool {
    let numbers = |v: &str| v.split('.').map(|part| part.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    numbers(to) < numbers(from)
}

#[derive(Debug, Clone, Deserialize)]
pub struct EngineVersion {
    pub engine: String,
    /// As DescribeCacheEngineVersions lists it, and as requests name it: major.minor from
    /// Redis 6 on and for Valkey (`7.1`), the full version before (`5.0.6`, `1.6.22`).
    pub engine_version: String,
    /// What a cluster created at this version runs, as DescribeCacheClusters shows it
    /// (`7.1` → `7.1.0`; Terraform's `engine_version_actual`).
    pub actual_version: String,
    pub cache_parameter_group_family: String,
    pub cache_engine_description: String,
    pub cache_engine_version_description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeType {
    pub redis_maxmemory_bytes: Option<u64>,
    pub memcached_max_cache_memory_mib: Option<u64>,
}

pub struct Catalog {
    families: Vec<Family>,
    engine_versions: Vec<EngineVersion>,
    node_types: BTreeMap<String, NodeType>,
    reserved_offerings: Vec<crate::reserved::Offering>,
    service_updates: Vec<crate::service_updates::ServiceUpdate>,
}

const FAMILY_FILES: [&str; 10] = [
    include_str!("../data/parameters/memcached1.4.json"),
    include_str!("../data/parameters/memcached1.5.json"),
    include_str!("../data/parameters/memcached1.6.json"),
    include_str!("../data/parameters/redis4.0.json"),
    include_str!("../data/parameters/redis5.0.json"),
    include_str!("../data/parameters/redis6.x.json"),
    include_str!("../data/parameters/redis7.json"),
    include_str!("../data/parameters/valkey7.json"),
    include_str!("../data/parameters/valkey8.json"),
    include_str!("../data/parameters/valkey9.json"),
];
const ENGINE_VERSIONS: &str = include_str!("../data/engine-versions.json");
const NODE_TYPES: &str = include_str!("../data/node-types.json");
const RESERVED_OFFERINGS: &str = include_str!("../data/reserved-node-offerings.json");
const SERVICE_UPDATES: &str = include_str!("../data/service-updates.json");

impl Catalog {
    /// Parses the compiled-in data. It is checked by this crate's tests, so a failure here
    /// is a build defect, not something a request can cause.
    pub fn load() -> Self {
        let mut families: Vec<Family> = FAMILY_FILES
            .iter()
            .map(|text| serde_json::from_str(text).expect("compiled-in parameter data is valid"))
            .collect();
        for family in &mut families {
            family.parameters.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let engine_versions = serde_json::from_str(ENGINE_VERSIONS).expect("compiled-in engine versions are valid");
        let node_types = serde_json::from_str(NODE_TYPES).expect("compiled-in node types are valid");
        let reserved_offerings =
            crate::reserved::expand(RESERVED_OFFERINGS).expect("compiled-in reserved node offerings are valid");
        let service_updates =
            crate::service_updates::parse(SERVICE_UPDATES).expect("compiled-in service updates are valid");
        Self { families, engine_versions, node_types, reserved_offerings, service_updates }
    }

    /// The service updates every region lists, by name.
    pub fn service_updates(&self) -> &[crate::service_updates::ServiceUpdate] {
        &self.service_updates
    }

    /// Every reserved cache node offering, by offering id.
    pub fn reserved_offerings(&self) -> &[crate::reserved::Offering] {
        &self.reserved_offerings
    }

    pub fn reserved_offering(&self, id: &str) -> Option<&crate::reserved::Offering> {
        self.reserved_offerings.binary_search_by(|o| o.id.as_str().cmp(id)).ok().map(|i| &self.reserved_offerings[i])
    }

    pub fn node_type(&self, name: &str) -> Option<&NodeType> {
        self.node_types.get(name)
    }

    pub fn node_types(&self) -> impl Iterator<Item = (&String, &NodeType)> {
        self.node_types.iter()
    }

    /// The versions offered for an engine, oldest first.
    pub fn versions_of<'a>(&'a self, engine: &'a str) -> impl Iterator<Item = &'a EngineVersion> + 'a {
        self.engine_versions.iter().filter(move |v| v.engine == engine)
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.family == name)
    }

    pub fn family_names(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.family.as_str())
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The offered version a cluster records: its actual version, or (in state written
    /// before actual versions were kept) the version as listed.
    pub fn recorded_version(&self, engine: &str, recorded: &str) -> Option<&EngineVersion> {
        self.engine_versions
            .iter()
            .find(|v| v.engine == engine && (v.actual_version == recorded || v.engine_version == recorded))
    }

    /// Engine versions in AWS's order: by engine, then oldest version first.
    pub fn engine_versions(&self) -> &[EngineVersion] {
        &self.engine_versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_loads_and_is_consistent() {
        let catalog = Catalog::load();
        let names = catalog.family_names().collect::<Vec<_>>();
        assert_eq!(names.len(), FAMILY_FILES.len());
        for name in names {
            let family = catalog.family(name).expect("family present");
            assert!(family.parameters.len() > 20, "{name} has its parameters");
            assert!(
                family.parameters.iter().all(|p| p.change_type == "immediate" || p.change_type == "requires-reboot")
            );
        }
        for version in catalog.engine_versions() {
            assert!(
                catalog.family(&version.cache_parameter_group_family).is_some(),
                "{} {} has a known family",
                version.engine,
                version.engine_version
            );
        }
        assert!(is_downgrade("1.6.12", "1.6.6"));
        assert!(!is_downgrade("1.6.6", "1.6.12"));
        assert!(!is_downgrade("7.0", "7.1"));
        let redis = catalog.family("redis7").expect("redis7");
        assert!(redis.parameter("maxmemory-policy").is_some_and(|p| p.modifiable));
        // Reserved offerings cover exactly the node types offered, each by its id.
        let offered: std::collections::BTreeSet<&str> =
            catalog.reserved_offerings().iter().map(|o| o.node_type.as_str()).collect();
        let node_types: std::collections::BTreeSet<&str> = catalog.node_types().map(|(n, _)| n.as_str()).collect();
        assert_eq!(offered, node_types);
        for o in catalog.reserved_offerings() {
            assert_eq!(catalog.reserved_offering(&o.id), Some(o));
        }
    }
}
