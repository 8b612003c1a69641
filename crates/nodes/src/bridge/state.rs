//! What a bridge's tasks share with those who ask about it: its phase, offsets and
//! counters, and the applier's request for an acknowledgement.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::{BridgePhase, BridgeState, LINK_FRESHNESS};

/// What a bridge's tasks share with its readers.
pub(crate) struct Shared {
    pub(super) id: String,
    status: Mutex<Status>,
    /// The applier asks the link task to acknowledge now (the source sent GETACK).
    pub(super) ack_now: Notify,
}

pub(super) struct Status {
    phase: BridgePhase,
    source_offset: u64,
    applied_offset: u64,
    last_applied: Option<Instant>,
    last_heard: Option<Instant>,
    full_syncs: u32,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Short critical sections that never panic: a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(super) fn new(id: &str) -> Self {
        let status = Status {
            phase: BridgePhase::Connecting,
            source_offset: 0,
            applied_offset: 0,
            last_applied: None,
            last_heard: None,
            full_syncs: 0,
        };
        Self { id: id.to_string(), status: Mutex::new(status), ack_now: Notify::new() }
    }

    pub(super) fn set_phase(&self, to: BridgePhase) {
        let mut status = lock(&self.status);
        if status.phase != to {
            let from = std::mem::replace(&mut status.phase, to.clone());
            match &to {
                BridgePhase::Failed(reason) => {
                    tracing::warn!(bridge = %self.id, from = ?from, to = "failed", reason, "bridge phase changed")
                }
                _ => tracing::info!(bridge = %self.id, from = ?from, to = ?to, "bridge phase changed"),
            }
        }
    }

    /// A full sync from `offset` begins: the target's data is about to be replaced.
    pub(super) fn begin_full_sync(&self, offset: u64) {
        {
            let mut status = lock(&self.status);
            status.full_syncs += 1;
            status.source_offset = offset;
            status.applied_offset = offset;
        }
        self.set_phase(BridgePhase::FullSync);
    }

    /// The source was heard from; it has sent the stream up to `offset`.
    pub(super) fn heard(&self, offset: u64) {
        let mut status = lock(&self.status);
        status.last_heard = Some(Instant::now());
        status.source_offset = status.source_offset.max(offset);
    }

    /// The link is gone: it is not up, whatever is still being applied.
    pub(super) fn link_lost(&self) {
        lock(&self.status).last_heard = None;
    }

    /// The source said (INFO) its offset is `offset`.
    pub(super) fn saw_source_offset(&self, offset: u64) {
        let mut status = lock(&self.status);
        status.source_offset = status.source_offset.max(offset);
    }

    pub(super) fn applied(&self) -> u64 {
        lock(&self.status).applied_offset
    }

    pub(super) fn set_applied(&self, offset: u64) {
        let mut status = lock(&self.status);
        status.applied_offset = offset;
        status.last_applied = Some(Instant::now());
    }

    pub(super) fn snapshot(&self) -> BridgeState {
        let status = lock(&self.status);
        let fresh = status.last_heard.is_some_and(|at| at.elapsed() < LINK_FRESHNESS);
        BridgeState {
            link_up: status.phase == BridgePhase::Streaming && fresh,
            phase: status.phase.clone(),
            source_offset: status.source_offset,
            applied_offset: status.applied_offset,
            last_applied: status.last_applied,
            full_syncs: status.full_syncs,
        }
    }
}
