//! Reads served from memory while the store has not changed since they were made.
//!
//! Every write transaction moves [`Sequence`] twice: to odd when it begins (before it can
//! write anything) and to even when it is over (after its commit). A read made while the
//! sequence stayed at one even value is what the store held all along at that value, so it
//! answers again for as long as the sequence stays there; the first write clears them all.
//! Nothing is kept while a write is under way, so no answer is older than the last
//! completed write: the store stays the one source of truth, this only spares reading and
//! decoding it again. What is kept is bounded ([`MAX_HELD`] records), whatever asks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Scope;
use crate::cache_clusters::{CacheCluster, Start};

/// Records held at most, over every kept read.
const MAX_HELD: usize = 4096;

/// The seqlock over the store's writes (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Sequence(AtomicU64);

impl Sequence {
    /// A write begins (called under the write lock) or ends.
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The value to keep a read under, or None while a write is under way.
    fn stable(&self) -> Option<u64> {
        let value = self.0.load(Ordering::SeqCst);
        value.is_multiple_of(2).then_some(value)
    }
}

/// What a kept read of cache clusters answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClusterRead {
    One(String),
    Page { start: Option<(String, bool)>, limit: usize, standalone_only: bool },
}

impl ClusterRead {
    pub(crate) fn page(start: Start<'_>, limit: usize, standalone_only: bool) -> Self {
        let start = match start {
            Start::First => None,
            Start::At(id) => Some((id.to_string(), true)),
            Start::After(id) => Some((id.to_string(), false)),
        };
        Self::Page { start, limit, standalone_only }
    }
}

#[derive(Debug, Default)]
struct Kept {
    sequence: u64,
    held: usize,
    clusters: HashMap<(Scope, ClusterRead), Arc<Vec<CacheCluster>>>,
}

#[derive(Debug, Default)]
pub(crate) struct SharedReads {
    pub(crate) sequence: Arc<Sequence>,
    kept: Mutex<Kept>,
}

impl SharedReads {
    /// The kept answer to `read`, or what `load` reads from the store (kept when no write
    /// began or ended meanwhile).
    pub(crate) async fn clusters<F>(
        &self,
        scope: &Scope,
        read: ClusterRead,
        load: F,
    ) -> crate::Result<Arc<Vec<CacheCluster>>>
    where
        F: AsyncFnOnce() -> crate::Result<Vec<CacheCluster>>,
    {
        let before = self.sequence.stable();
        let key = (scope.clone(), read);
        if let Some(before) = before {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.sequence != before {
                // Written since: what was kept goes at once, not at the next insert.
                *kept = Kept { sequence: before, ..Kept::default() };
            } else if let Some(hit) = kept.clusters.get(&key) {
                return Ok(hit.clone());
            }
        }
        let loaded = Arc::new(load().await?);
        if let Some(before) = before
            && self.sequence.stable() == Some(before)
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.sequence != before {
                *kept = Kept { sequence: before, ..Kept::default() };
            }
            // At least one entry's worth: an empty answer (not found) counts as one.
            let size = loaded.len().max(1);
            if kept.held + size <= MAX_HELD {
                kept.held += size;
                if let Some(replaced) = kept.clusters.insert(key, loaded.clone()) {
                    kept.held -= replaced.len().max(1);
                }
            }
        }
        Ok(loaded)
    }
}
