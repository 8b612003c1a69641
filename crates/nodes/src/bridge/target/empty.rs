//! Emptying the target of what the source holds, before a full sync's copy and for the
//! source's FLUSHALL. A source not in cluster mode holds everything: every primary runs
//! FLUSHALL. A shard primary holds only its slots, and other bridges (one per source shard
//! of a Global Datastore) fill the others: only keys of its slots go.

use std::collections::BTreeMap;

use super::{Targets, Unit, lower};
use crate::bridge::Stop;
use crate::cluster::{SLOTS, key_slot};
use crate::resp::{self, Reply};

/// Keys fetched (and unlinked) per round trip.
const BATCH: usize = 1000;

/// Whether `args` is a FLUSHALL/FLUSHDB.
pub(super) fn flushes(args: &[Vec<u8>]) -> bool {
    args.first().is_some_and(|name| matches!(lower(name).as_str(), "flushall" | "flushdb"))
}

impl Targets {
    /// Removes from the target everything the source holds: all of it, or its slots' keys.
    pub(in crate::bridge) async fn empty(&mut self) -> Result<(), Stop> {
        let Some(slots) = self.source_slots.clone() else {
            let refused = self.execute_segment(vec![Unit::Command(vec![b"FLUSHALL".to_vec()])]).await?;
            return match refused.first() {
                Some(error) => Err(Stop::Resync(format!("emptying the target: {error}"))),
                None => Ok(()),
            };
        };
        if self.cluster { self.empty_owned_slots(&slots).await } else { self.empty_by_scan(&slots).await }
    }

    /// On a cluster: counts the keys of each slot at its owner, then fetches and unlinks
    /// them slot by slot.
    async fn empty_owned_slots(&mut self, slots: &[u16]) -> Result<(), Stop> {
        let mut by_node: BTreeMap<usize, Vec<u16>> = BTreeMap::new();
        for &slot in slots {
            by_node.entry(self.owner_of(slot)?).or_default().push(slot);
        }
        for (node, slots) in by_node {
            self.connect(node).await?;
            let counts: Vec<u8> = slots
                .iter()
                .flat_map(|slot| resp::encode(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]))
                .collect();
            self.send(node, &counts).await?;
            let mut filled = Vec::new();
            for &slot in &slots {
                match self.read(node).await? {
                    Reply::Integer(n) if n > 0 => filled.push(slot),
                    Reply::Error(error) => return Err(Stop::Resync(format!("counting keys in slot {slot}: {error}"))),
                    _ => {}
                }
            }
            for slot in filled {
                let get = resp::encode(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), &BATCH.to_string()]);
                loop {
                    let keys = keys_of(self.ask(node, &get).await?)?;
                    if keys.is_empty() {
                        break;
                    }
                    self.unlink(node, keys).await?;
                }
            }
        }
        Ok(())
    }

    /// On a node that is no cluster: scans every key and unlinks those of `slots`.
    async fn empty_by_scan(&mut self, slots: &[u16]) -> Result<(), Stop> {
        let mut wanted = vec![false; usize::from(SLOTS)];
        for &slot in slots {
            if let Some(wanted) = wanted.get_mut(usize::from(slot)) {
                *wanted = true;
            }
        }
        let mut cursor = "0".to_string();
        loop {
            let scan = resp::encode(&["SCAN", &cursor, "COUNT", &BATCH.to_string()]);
            let reply = self.ask(0, &scan).await?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(Stop::Resync(format!("SCAN answered {reply:?}")));
            };
            let keys = keys_of(parts.pop().unwrap_or(Reply::Array(None)))?;
            cursor = parts.pop().and_then(|c| c.as_text()).unwrap_or_else(|| "0".into());
            let doomed: Vec<Vec<u8>> = keys.into_iter().filter(|k| wanted[usize::from(key_slot(k))]).collect();
            if !doomed.is_empty() {
                self.unlink(0, doomed).await?;
            }
            if cursor == "0" {
                return Ok(());
            }
        }
    }

    async fn unlink(&mut self, node: usize, keys: Vec<Vec<u8>>) -> Result<(), Stop> {
        let mut command = vec![b"UNLINK".to_vec()];
        command.extend(keys);
        match self.ask(node, &resp::encode(&command)).await? {
            Reply::Error(error) => Err(Stop::Resync(format!("emptying the target: {error}"))),
            _ => Ok(()),
        }
    }
}

fn keys_of(reply: Reply) -> Result<Vec<Vec<u8>>, Stop> {
    match reply {
        Reply::Array(Some(keys)) => {
            Ok(keys.into_iter().filter_map(|k| if let Reply::Bulk(Some(k)) = k { Some(k) } else { None }).collect())
        }
        Reply::Array(None) => Ok(Vec::new()),
        other => Err(Stop::Resync(format!("expected keys, got {other:?}"))),
    }
}
