//! Commands whose two keys a cluster keeps in different slots, which it refuses
//! (CROSSSLOT), done in steps with the same effect, each waiting for the answer before: RENAME
//! as DUMP, RESTORE and DEL; LMOVE and RPOPLPUSH as a pop and a push. Only what the source
//! ran reaches its stream, so the source key exists and the move is to be made. (SMOVE
//! needs no answer: it is planned as SREM and SADD, see `route`.)

use super::{Piece, Targets, lower};
use crate::bridge::Stop;
use crate::cluster::key_slot;
use crate::resp::Reply;

/// Whether `args` moves data between two keys of different slots.
pub(super) fn is_cross_slot_move(args: &[Vec<u8>]) -> bool {
    let Some(name) = args.first().map(|n| lower(n)) else { return false };
    let known = matches!(name.as_str(), "rename" | "renamenx" | "lmove" | "rpoplpush");
    known && args.len() >= 3 && key_slot(&args[1]) != key_slot(&args[2])
}

impl Targets {
    /// Applies a move [`is_cross_slot_move`] accepted; returns the refusals.
    pub(super) async fn cross_slot_move(&mut self, args: &[Vec<u8>]) -> Result<Vec<String>, Stop> {
        let (Some(name), Some(source), Some(destination)) = (args.first(), args.get(1), args.get(2)) else {
            return Ok(Vec::new());
        };
        let name = lower(name);
        let (from, to) = (key_slot(source), key_slot(destination));
        let word = |i: usize| args.get(i).map(|w| lower(w)).unwrap_or_default();
        let mut refused = Vec::new();
        if name == "rename" || name == "renamenx" {
            let dump = self.run_at(from, vec![b"DUMP".to_vec(), source.clone()]).await?;
            let ttl = self.run_at(from, vec![b"PTTL".to_vec(), source.clone()]).await?;
            let Reply::Bulk(Some(payload)) = dump else {
                return Ok(vec![format!("{name}: the target has no {}", String::from_utf8_lossy(source))]);
            };
            let ttl = if let Reply::Integer(ttl @ 1..) = ttl { ttl.to_string() } else { "0".to_string() };
            let restore =
                vec![b"RESTORE".to_vec(), destination.clone(), ttl.into_bytes(), payload, b"REPLACE".to_vec()];
            refused.extend(refusal(self.run_at(to, restore).await?));
            refused.extend(refusal(self.run_at(from, vec![b"DEL".to_vec(), source.clone()]).await?));
        } else {
            let (pop, push) = match name.as_str() {
                "rpoplpush" => ("RPOP", "LPUSH"),
                _ => {
                    (if word(3) == "left" { "LPOP" } else { "RPOP" }, if word(4) == "left" { "LPUSH" } else { "RPUSH" })
                }
            };
            match self.run_at(from, vec![pop.as_bytes().to_vec(), source.clone()]).await? {
                Reply::Bulk(Some(value)) => {
                    let push = vec![push.as_bytes().to_vec(), destination.clone(), value];
                    refused.extend(refusal(self.run_at(to, push).await?));
                }
                other => refused.push(format!("{name}: {pop} answered {other:?}")),
            }
        }
        Ok(refused)
    }

    /// One command for `slot`'s owner, following redirections: its reply.
    async fn run_at(&mut self, slot: u16, command: Vec<Vec<u8>>) -> Result<Reply, Stop> {
        let piece = Piece::single(self.owner_of(slot)?, Some(slot), command);
        let mut replies = self.deliver(&piece).await?;
        Ok(if replies.is_empty() { Reply::Array(None) } else { replies.remove(0) })
    }
}

fn refusal(reply: Reply) -> Option<String> {
    if let Reply::Error(error) = reply { Some(error) } else { None }
}
