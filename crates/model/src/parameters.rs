//! The values a cache parameter group gives its nodes: its family's defaults, what a
//! default group adds (`cluster-enabled yes` in `default.*.cluster.on`), and what the user
//! set, in that order of precedence.

use crate::catalog::{Catalog, Family};

/// What a default group has beyond its family's defaults.
pub fn built_in_values(group_name: &str, is_default: bool) -> Vec<(String, String)> {
    if is_default && group_name.ends_with(".cluster.on") {
        vec![("cluster-enabled".to_string(), "yes".to_string())]
    } else {
        Vec::new()
    }
}

/// A family's default values with `overrides` applied (added at the end when new).
pub fn with_overrides(family: &Family, overrides: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> =
        family.parameters.iter().filter_map(|p| p.value.clone().map(|v| (p.name.clone(), v))).collect();
    for (name, value) in overrides {
        match values.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => values.push((name, value)),
        }
    }
    values
}

/// The values of group `name` (of `family`, a default group or not) with the values a user
/// set in it; None for an unknown family.
pub fn effective(
    catalog: &Catalog,
    family: &str,
    name: &str,
    is_default: bool,
    user_values: impl IntoIterator<Item = (String, String)>,
) -> Option<Vec<(String, String)>> {
    let overrides = built_in_values(name, is_default).into_iter().chain(user_values);
    Some(with_overrides(catalog.family(family)?, overrides))
}

/// The values of the default group `default.<family>` (or `default.<family>.cluster.on`).
pub fn default_values(catalog: &Catalog, family: &str, cluster_on: bool) -> Option<Vec<(String, String)>> {
    let suffix = if cluster_on { ".cluster.on" } else { "" };
    effective(catalog, family, &format!("default.{family}{suffix}"), true, [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_values_win_and_cluster_on_groups_enable_cluster_mode() {
        let catalog = Catalog::load();
        let defaults = default_values(&catalog, "redis7", false).expect("redis7");
        assert!(defaults.contains(&("cluster-enabled".to_string(), "no".to_string())));
        let cluster_on = default_values(&catalog, "redis7", true).expect("redis7");
        assert!(cluster_on.contains(&("cluster-enabled".to_string(), "yes".to_string())));
        let mine = effective(&catalog, "redis7", "mine", false, [("maxmemory-policy".into(), "allkeys-lru".into())])
            .expect("redis7");
        assert!(mine.contains(&("maxmemory-policy".to_string(), "allkeys-lru".to_string())));
        assert!(effective(&catalog, "redis1", "x", false, []).is_none());
    }
}
