//! Where each command goes: the key specs of the target's command table, the slot of each
//! key, and the pieces a unit becomes (one per node it touches).

use std::collections::HashMap;

use super::{Piece, Targets, Unit, lower};
use crate::bridge::Stop;
use crate::cluster::key_slot;
use crate::resp::{self, Reply};

/// Commands that change data without naming keys: every primary gets them.
const EVERY_PRIMARY: &[&str] = &["flushall", "flushdb", "script", "function"];
/// Multi-key commands that mean the same run key by key.
const PER_KEY: &[&str] = &["del", "unlink", "touch", "exists"];
/// Multi-key commands that mean the same run pair by pair (MSETNX only reaches the stream
/// when it set every key).
const PER_PAIR: &[&str] = &["mset", "msetnx"];

/// Where a command's keys are (`COMMAND INFO`'s legacy first/last/step).
#[derive(Clone, Copy, Debug)]
pub(super) struct KeySpec {
    first: i64,
    last: i64,
    step: i64,
    /// Positions depend on the arguments: asked of a node.
    movable: bool,
    /// A container (`XGROUP`, `OBJECT`, ...): its subcommands have the key specs.
    container: bool,
}

impl Targets {
    pub(super) async fn plan(
        &mut self,
        unit: Unit,
        pieces: &mut Vec<Piece>,
        selected: &mut Option<u32>,
    ) -> Result<(), Stop> {
        match unit {
            Unit::Select(0) if self.cluster => Ok(()),
            Unit::Select(db) if self.cluster => {
                Err(Stop::Retry(format!("source uses database {db}; the target has only database 0")))
            }
            Unit::Select(db) => {
                *selected = Some(db);
                let args = vec![b"SELECT".to_vec(), db.to_string().into_bytes()];
                pieces.push(Piece { node: 0, slot: None, commands: vec![args], transaction: false });
                Ok(())
            }
            Unit::Command(args) => self.plan_command(args, pieces).await,
            Unit::Transaction(commands) => self.plan_transaction(commands, pieces).await,
        }
    }

    pub(super) async fn plan_command(&mut self, args: Vec<Vec<u8>>, pieces: &mut Vec<Piece>) -> Result<(), Stop> {
        let single = Piece::single;
        if !self.cluster {
            pieces.push(single(0, None, args));
            return Ok(());
        }
        let name = args.first().map(|n| lower(n)).unwrap_or_default();
        if EVERY_PRIMARY.contains(&name.as_str()) {
            for node in self.primaries() {
                pieces.push(single(node, None, args.clone()));
            }
            return Ok(());
        }
        let slots = self.slots(&args).await?;
        let Some(&slot) = slots.first() else {
            pieces.push(single(self.owner[0].unwrap_or(0), None, args));
            return Ok(());
        };
        if slots.iter().all(|&s| s == slot) {
            pieces.push(single(self.owner_of(slot)?, Some(slot), args));
        } else if PER_KEY.contains(&name.as_str()) {
            for key in &args[1..] {
                let slot = key_slot(key);
                pieces.push(single(self.owner_of(slot)?, Some(slot), vec![args[0].clone(), key.clone()]));
            }
        } else if PER_PAIR.contains(&name.as_str()) {
            for pair in args[1..].chunks_exact(2) {
                let slot = key_slot(&pair[0]);
                let command = vec![b"MSET".to_vec(), pair[0].clone(), pair[1].clone()];
                pieces.push(single(self.owner_of(slot)?, Some(slot), command));
            }
        } else if let ("smove", [_, source, destination, member]) = (name.as_str(), args.as_slice()) {
            // Only a move the source made reaches the stream: its two halves, each at its node.
            let (from, to) = (key_slot(source), key_slot(destination));
            let remove = vec![b"SREM".to_vec(), source.clone(), member.clone()];
            pieces.push(single(self.owner_of(from)?, Some(from), remove));
            let add = vec![b"SADD".to_vec(), destination.clone(), member.clone()];
            pieces.push(single(self.owner_of(to)?, Some(to), add));
        } else {
            // The node refuses it (CROSSSLOT), and the refusal is reported.
            pieces.push(single(self.owner_of(slot)?, Some(slot), args));
        }
        Ok(())
    }

    /// A transaction stays one when a cluster can run it (all its keys in one slot), and is
    /// applied command by command otherwise.
    pub(super) async fn plan_transaction(
        &mut self,
        commands: Vec<Vec<Vec<u8>>>,
        pieces: &mut Vec<Piece>,
    ) -> Result<(), Stop> {
        if !self.cluster {
            pieces.push(Piece { node: 0, slot: None, commands, transaction: true });
            return Ok(());
        }
        let mut slots = Vec::new();
        let mut everywhere = false;
        for command in &commands {
            everywhere |= command.first().is_some_and(|n| EVERY_PRIMARY.contains(&lower(n).as_str()));
            slots.extend(self.slots(command).await?);
        }
        let one_slot = slots.first().filter(|&&s| slots.iter().all(|&t| t == s)).copied();
        match one_slot {
            Some(slot) if !everywhere => {
                pieces.push(Piece { node: self.owner_of(slot)?, slot: Some(slot), commands, transaction: true })
            }
            None if slots.is_empty() && !everywhere => {
                pieces.push(Piece { node: self.owner[0].unwrap_or(0), slot: None, commands, transaction: true })
            }
            _ => {
                for command in commands {
                    Box::pin(self.plan_command(command, pieces)).await?;
                }
            }
        }
        Ok(())
    }

    /// The slots of a command's keys.
    pub(super) async fn slots(&mut self, args: &[Vec<u8>]) -> Result<Vec<u16>, Stop> {
        let Some(name) = args.first().map(|n| lower(n)) else { return Ok(Vec::new()) };
        let Some(Some(mut spec)) = self.commands.get(&name).copied() else { return Ok(Vec::new()) };
        if spec.container {
            let sub = args.get(1).map(|s| format!("{name}|{}", lower(s))).unwrap_or_default();
            let Some(Some(sub)) = self.commands.get(&sub).copied() else { return Ok(Vec::new()) };
            spec = sub;
        }
        if spec.movable {
            return self.movable_keys(args).await;
        }
        let len = i64::try_from(args.len()).unwrap_or(i64::MAX);
        let last = if spec.last < 0 { len + spec.last } else { spec.last.min(len - 1) };
        let mut slots = Vec::new();
        let mut at = spec.first;
        while at > 0 && at <= last {
            if let Some(key) = usize::try_from(at).ok().and_then(|i| args.get(i)) {
                slots.push(key_slot(key));
            }
            at += spec.step.max(1);
        }
        Ok(slots)
    }

    pub(super) async fn movable_keys(&mut self, args: &[Vec<u8>]) -> Result<Vec<u16>, Stop> {
        let mut command = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
        command.extend(args.iter().cloned());
        let reply = self.ask(0, &resp::encode(&command)).await?;
        let Reply::Array(Some(keys)) = reply else { return Ok(Vec::new()) };
        Ok(keys.iter().filter_map(|k| if let Reply::Bulk(Some(k)) = k { Some(key_slot(k)) } else { None }).collect())
    }

    /// Loads the key specs of the commands in `units` the table does not know yet.
    pub(super) async fn learn(&mut self, units: &[Unit]) -> Result<(), Stop> {
        if !self.cluster {
            return Ok(());
        }
        let mut names: Vec<String> = Vec::new();
        let mut note = |args: &Vec<Vec<u8>>| {
            let name = args.first().map(|n| lower(n)).unwrap_or_default();
            if !self.commands.contains_key(&name) && !names.contains(&name) {
                names.push(name);
            }
        };
        for unit in units {
            match unit {
                Unit::Command(args) => note(args),
                Unit::Transaction(commands) => commands.iter().for_each(&mut note),
                Unit::Select(_) => {}
            }
        }
        if names.is_empty() {
            return Ok(());
        }
        let mut command = vec!["COMMAND", "INFO"];
        command.extend(names.iter().map(String::as_str));
        let reply = self.ask(0, &resp::encode(&command)).await?;
        let entries = match reply {
            Reply::Array(Some(entries)) => entries,
            other => return Err(Stop::Retry(format!("COMMAND INFO answered {other:?}"))),
        };
        for (name, entry) in names.iter().zip(&entries) {
            self.commands.insert(name.clone(), None);
            learn_entry(entry, &mut self.commands);
        }
        Ok(())
    }
}

/// Records one `COMMAND INFO` entry (and its subcommands) in `table`.
fn learn_entry(entry: &Reply, table: &mut HashMap<String, Option<KeySpec>>) {
    let Reply::Array(Some(fields)) = entry else { return };
    let Some(name) = fields.first().and_then(Reply::as_text) else { return };
    let int = |i: usize| if let Some(Reply::Integer(n)) = fields.get(i) { *n } else { 0 };
    let movable = match fields.get(2) {
        Some(Reply::Array(Some(flags))) => flags.iter().filter_map(Reply::as_text).any(|f| f == "movablekeys"),
        _ => false,
    };
    let subcommands = match fields.get(9) {
        Some(Reply::Array(Some(subcommands))) => subcommands.as_slice(),
        _ => &[],
    };
    let spec = KeySpec { first: int(3), last: int(4), step: int(5), movable, container: !subcommands.is_empty() };
    table.insert(name.to_ascii_lowercase(), Some(spec));
    for sub in subcommands {
        learn_entry(sub, table);
    }
}
