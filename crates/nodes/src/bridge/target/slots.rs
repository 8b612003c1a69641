//! Which target primary owns each slot: read from the primaries themselves, corrected by
//! MOVED answers, extended to primaries the slots moved to.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Target, Targets, gone};
use crate::bridge::Stop;
use crate::cluster::{SLOTS, parse_nodes};
use crate::resp::{self, Reply};

impl Targets {
    /// Reads which primary owns which slot again, unless that was just done.
    pub(super) async fn refresh_soon(&mut self) -> Result<(), Stop> {
        if self.refreshed.is_some_and(|at| at.elapsed() < Duration::from_millis(20)) {
            return Ok(());
        }
        self.refresh().await
    }

    /// Reads the slot map: each known primary's own slots (`myself` in CLUSTER NODES),
    /// then, for slots none of them has, whoever their views say owns them.
    pub(super) async fn refresh(&mut self) -> Result<(), Stop> {
        self.refreshed = Some(Instant::now());
        let mut owner = vec![None; usize::from(SLOTS)];
        let mut views = Vec::new();
        let known = self.nodes.len();
        for i in 0..known {
            let reply = match self.ask(i, &resp::encode(&["CLUSTER", "NODES"])).await {
                Ok(reply) => reply,
                Err(stop) => {
                    tracing::debug!(node = %self.nodes[i].key, reason = stop.reason(), "bridge target did not answer");
                    continue;
                }
            };
            let text = match reply {
                Reply::Error(error) if error.contains("cluster support disabled") => return self.single_node(),
                Reply::Error(error) => return Err(Stop::Retry(format!("target {}: {error}", self.nodes[i].key))),
                other => other.as_text().unwrap_or_default(),
            };
            let view = parse_nodes(&text);
            if let Some(me) = view.iter().find(|n| n.myself && n.primary) {
                for slot in me.slots.iter().flat_map(|&(a, b)| a..=b) {
                    owner[usize::from(slot)] = Some(i);
                }
            }
            views.push(view);
        }
        if views.is_empty() {
            return Err(Stop::Retry("no target node answered".into()));
        }
        for node in views.iter().flatten().filter(|n| n.primary && !n.failing && !n.myself) {
            let Some(address) = node.address else { continue };
            for &(from, to) in &node.slots {
                let range = usize::from(from)..=usize::from(to).min(owner.len() - 1);
                if owner[range.clone()].iter().any(Option::is_none)
                    && let Ok(index) = self.node_at(address)
                {
                    owner[range].iter_mut().for_each(|o| _ = o.get_or_insert(index));
                }
            }
        }
        self.owner = owner;
        self.cluster = true;
        Ok(())
    }

    /// A target that is no cluster: one node, owning everything.
    pub(super) fn single_node(&mut self) -> Result<(), Stop> {
        if self.nodes.len() != 1 {
            return Err(Stop::Retry("a target node is not in cluster mode, yet there are several".into()));
        }
        self.cluster = false;
        self.owner = vec![Some(0); usize::from(SLOTS)];
        Ok(())
    }

    pub(super) fn owner_of(&self, slot: u16) -> Result<usize, Stop> {
        self.owner
            .get(usize::from(slot))
            .copied()
            .flatten()
            .ok_or_else(|| Stop::Retry(format!("no target primary owns slot {slot}")))
    }

    /// The nodes owning slots (all known ones if none does).
    pub(super) fn primaries(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = self.owner.iter().flatten().copied().collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() { (0..self.nodes.len()).collect() } else { nodes }
    }

    /// The node at `address`: a known one, or one the runtime supervises (a primary
    /// the target's slots moved to).
    pub(super) fn node_at(&mut self, address: SocketAddr) -> Result<usize, Stop> {
        if let Some(i) = self.nodes.iter().position(|n| n.address == Some(address)) {
            return Ok(i);
        }
        let runtime = self.runtime.upgrade().ok_or_else(gone)?;
        let node = runtime.running().into_iter().find(|n| SocketAddr::from((n.address, n.port)) == address);
        let node = node.ok_or_else(|| Stop::Retry(format!("the target sent the bridge to {address}, no node here")))?;
        self.nodes.push(Target { key: node.key, address: Some(address), conn: None });
        Ok(self.nodes.len() - 1)
    }
}
