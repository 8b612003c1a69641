//! The warm pools the runtime keeps (see `nodes::warm`): per engine, nodes with a default
//! parameter group, cluster-enabled (a new cluster-mode primary skips redis's two-second
//! delay) and standalone (a new cluster or group primary skips the start). A node's spec
//! must come out equal to a template (`cache_clusters::reconcile` builds both with the same
//! functions) to be handed one.

use nodes::{EngineKind, NodeSpec, WarmSettings};

use crate::Reconciler;
use crate::cache_clusters::{DEFAULT_MAX_MEMORY, major_version, redis_directives};
use crate::cluster_mode::node_directives;

/// Standalone nodes kept warm per engine: two, so that a create takes one and leaves one
/// for the next, and the pool's refill can wait until that create is done (see
/// `nodes::warm`).
pub(crate) const STANDALONE: usize = 2;

/// The pools to keep: `cluster_nodes` cluster-enabled redis nodes (a three-shard group's
/// primaries by default), one cluster-enabled valkey node, where a serverless cache (one
/// valkey shard to begin with) also starts its primary, and [`STANDALONE`] of each
/// standalone kind; none at all when `cluster_nodes` is 0.
pub(crate) fn pools(r: &Reconciler, cluster_nodes: usize) -> Vec<WarmSettings> {
    let enabled = cluster_nodes.min(1);
    let kinds = [
        (EngineKind::Redis, true, cluster_nodes),
        (EngineKind::Valkey, true, enabled),
        (EngineKind::Redis, false, enabled * STANDALONE),
        (EngineKind::Valkey, false, enabled * STANDALONE),
    ];
    let warm = r.state_dir.join("nodes").join("warm");
    kinds
        .into_iter()
        .filter_map(|(engine, cluster_mode, size)| {
            let template = template(r, engine, cluster_mode)?;
            let name = if cluster_mode { engine.name().to_string() } else { format!("{}-standalone", engine.name()) };
            let prepare = if cluster_mode { preparation() } else { Vec::new() };
            Some(WarmSettings { root: warm.join(name), template, size, prepare })
        })
        .collect()
}

/// What a new node of `engine` with a default parameter group starts as: a cluster-mode
/// shard's primary, or a standalone node.
fn template(r: &Reconciler, engine: EngineKind, cluster_mode: bool) -> Option<NodeSpec> {
    let major = r.runtime.engines().binary(engine).map(|b| major_version(&b.version))?;
    let versions = || r.catalog.versions_of(engine.name());
    // Cluster-enabled: the newest family of the binary's line (redis7, valkey8), what a
    // serverless cache runs. Standalone: the default version's (the newest, as a create
    // without `EngineVersion` gets).
    let version = if cluster_mode {
        versions().filter(|v| major_version(&v.engine_version) == major).last()?
    } else {
        versions().last()?
    };
    let family = &version.cache_parameter_group_family;
    let group_directives = if cluster_mode { node_directives(major) } else { Vec::new() };
    Some(NodeSpec {
        engine,
        max_memory_bytes: DEFAULT_MAX_MEMORY,
        parameters: model::parameters::default_values(&r.catalog, family, cluster_mode)?,
        directives: redis_directives(group_directives, major),
        ..NodeSpec::default()
    })
}

/// What a cluster-enabled warm node does once started: it takes every slot, so that as a
/// shard's new primary it keeps some (its shard's, see `cluster_mode::reconcile`) from the
/// first moment and redis never holds it back as a master without slots (its rejoin delay).
fn preparation() -> Vec<Vec<String>> {
    vec![["CLUSTER", "ADDSLOTSRANGE", "0", "16383"].map(String::from).to_vec()]
}
