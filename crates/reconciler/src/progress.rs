//! How far the long operations are (slots moved by a reshard, keys saved by a snapshot,
//! keys spread over the shards by a cluster-mode restore, the replication offset an online
//! migration has reached of its source's), for `elasticache-local status` and the
//! dashboard, and in the log at every tenth.
//!
//! AWS reports a reshard's progress itself (`PendingModifiedValues.Resharding`, which the
//! store keeps); the others it does not report at all. A restore without cluster mode is
//! the engine loading its file as it starts, not followed here. This table is what the emulator
//! adds, in memory only: an operation interrupted by a restart starts over, and so does
//! its progress.

use std::collections::BTreeMap;
use std::sync::Mutex;

use store::Scope;

/// One running operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    pub region: String,
    /// `resharding`, `snapshot`, `restore` or `migration`.
    pub operation: &'static str,
    /// The group, cluster or snapshot the operation is about.
    pub resource: String,
    pub done: u64,
    pub total: u64,
}

impl Step {
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 0.0 } else { 100.0 * self.done as f64 / self.total as f64 }
    }
}

#[derive(Default)]
pub struct Progress {
    running: Mutex<BTreeMap<(String, &'static str, String), Step>>,
}

impl Progress {
    /// `done` of `total` for `operation` on `resource`; logged when it crosses a tenth.
    pub fn report(&self, scope: &Scope, operation: &'static str, resource: &str, done: u64, total: u64) {
        let key = (crate::scope_key(scope), operation, resource.to_string());
        let step = Step { region: scope.region.clone(), operation, resource: resource.to_string(), done, total };
        let before = crate::lock(&self.running).insert(key, step.clone());
        let tenth = |s: &Step| (s.total > 0).then(|| s.done * 10 / s.total);
        if before.as_ref().and_then(tenth) != tenth(&step) {
            tracing::info!(operation, resource, done, total, percent = step.percent().round(), "progress");
        }
    }

    /// The operation is over (done or given up).
    pub fn finish(&self, scope: &Scope, operation: &'static str, resource: &str) {
        crate::lock(&self.running).remove(&(crate::scope_key(scope), operation, resource.to_string()));
    }

    /// Every running operation, by region, operation and resource.
    pub fn running(&self) -> Vec<Step> {
        crate::lock(&self.running).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_is_listed_until_it_finishes() {
        let progress = Progress::default();
        let scope = Scope { account: "000000000000".into(), region: "us-east-1".into() };
        progress.report(&scope, "snapshot", "nightly", 0, 200);
        progress.report(&scope, "snapshot", "nightly", 50, 200);
        let running = progress.running();
        assert_eq!(running.len(), 1);
        assert_eq!((running[0].resource.as_str(), running[0].percent()), ("nightly", 25.0));
        progress.finish(&scope, "snapshot", "nightly");
        assert!(progress.running().is_empty());
    }
}
