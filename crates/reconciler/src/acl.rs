//! Role-based access control on the nodes: the users of the user group attached to a
//! replication group become the ACL of every member node (`ACL SETUSER`), kept in step as
//! users and groups change; once detached, the nodes go back to the AUTH token (or none).
//! The emulator's own user is never touched.

use model::status::cluster as status;
use nodes::NodeKey;
use nodes::resp::Reply;
use sha2::Digest as _;
use store::{ReplicationGroup, UserRecord};

use crate::error::Error;
use crate::replication_groups::node_key;
use crate::{Reconciler, lock};

/// One ACL user: its name and the `ACL SETUSER` rules after `reset`.
type AclUser = (String, Vec<String>);

/// The rules that make a stored user a Redis ACL user.
fn rules(user: &UserRecord) -> Vec<String> {
    let mut rules: Vec<String> = match user.authentication.as_str() {
        "password" => user.password_hashes.iter().map(|hash| format!("#{hash}")).collect(),
        "no-password" => vec!["nopass".to_string()],
        // IAM tokens cannot be checked here: such a user has no way in.
        _ => Vec::new(),
    };
    rules.extend(user.access_string.split_whitespace().map(str::to_string));
    rules
}

/// Whether clients of `g` may only read: bridges write into its shard primaries, which a
/// replica's `READONLY` cannot guard in cluster mode: a cluster-mode global datastore's
/// secondary, or a cluster-mode group under online migration ("you can read from the
/// ElastiCache cluster, you can't write to it", Migration-Initiate, user guide).
pub(crate) async fn read_only(r: &Reconciler, g: &ReplicationGroup) -> bool {
    crate::migration::bridged(g) || crate::global::bridged_secondary(r, g).await
}

/// The ACL users of the group's user groups, or None when no user group is attached;
/// `read_only` takes `@write` from every one (see [`read_only`]).
pub(crate) async fn desired(
    r: &Reconciler,
    g: &ReplicationGroup,
    read_only: bool,
) -> Result<Option<Vec<AclUser>>, Error> {
    if g.group.user_group_ids.is_empty() {
        return Ok(None);
    }
    let mut users = Vec::new();
    for id in &g.group.user_group_ids {
        if let Some((_, members)) = r.store.user_group_with_users(&g.scope, id).await.map_err(Error::Store)? {
            users.extend(members.iter().map(|u| (u.name.clone(), rules(u))));
        }
    }
    if read_only {
        users.iter_mut().for_each(|(_, rules)| rules.push(READ_ONLY.to_string()));
    }
    Ok(Some(users))
}

/// The rule that leaves a user only reads.
const READ_ONLY: &str = "-@write";

/// A digest of what the nodes should have, to tell at a glance whether a node has it.
fn fingerprint(desired: &Option<Vec<AclUser>>, auth: &str) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(format!("{desired:?}|{auth}").as_bytes());
    hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Config lines (`user <name> reset <rules>`) that start a member node with the group's
/// users, so a node (re)started under RBAC never answers with the open default user.
pub(crate) async fn config_directives(r: &Reconciler, g: &ReplicationGroup) -> Vec<(String, String)> {
    let read_only = read_only(r, g).await;
    match desired(r, g, read_only).await {
        Ok(Some(users)) => users
            .into_iter()
            .map(|(name, rules)| ("user".to_string(), format!("{name} reset {}", rules.join(" "))))
            .collect(),
        _ => Vec::new(),
    }
}

/// Brings every running member node's ACL to the group's users. Returns whether every
/// node has it (a failure is logged, and the next reconcile tries again).
pub async fn sync(r: &Reconciler, g: &ReplicationGroup) -> bool {
    let read_only = read_only(r, g).await;
    let desired = match desired(r, g, read_only).await {
        Ok(desired) => desired,
        Err(error) => {
            tracing::warn!(replication_group = g.group.id, %error, "reading the group's users failed");
            return false;
        }
    };
    let wanted = fingerprint(&desired, &format!("{}{read_only}", g.group.security.auth_fingerprint()));
    let mut all_applied = true;
    for member in g.members.iter().filter(|m| m.cluster.status != status::DELETING) {
        let Some(key) = node_key(&g.scope, member) else { continue };
        let Some(running) = r.runtime.get(&key) else { continue };
        let applied: Option<(u32, String)> = lock(&r.acl_applied).get(&key).cloned();
        // A node never given users has what its config says (the AUTH token): nothing to undo.
        let untouched = applied.as_ref().is_none_or(|(pid, _)| *pid != running.pid);
        if applied.as_ref().is_some_and(|(pid, fp)| *pid == running.pid && *fp == wanted)
            || (desired.is_none() && !read_only && untouched)
        {
            continue;
        }
        match apply(r, &key, &desired, &g.group.security.auth_tokens, read_only).await {
            Ok(()) => {
                tracing::info!(node = %key, users = desired.as_ref().map_or(0, Vec::len), "node ACL applied");
                lock(&r.acl_applied).insert(key, (running.pid, wanted.clone()));
            }
            Err(error) => {
                tracing::warn!(node = %key, %error, "applying the ACL failed");
                all_applied = false;
            }
        }
    }
    all_applied
}

async fn apply(
    r: &Reconciler,
    key: &NodeKey,
    desired: &Option<Vec<AclUser>>,
    tokens: &[String],
    read_only: bool,
) -> Result<(), Error> {
    let mut keep = vec!["default".to_string(), nodes::CONTROL_USER.to_string()];
    match desired {
        Some(users) => {
            let mut session = r.runtime.session(key).await.map_err(Error::Node)?;
            for (name, rules) in users {
                let mut command = vec!["ACL".to_string(), "SETUSER".to_string(), name.clone(), "reset".to_string()];
                command.extend(rules.iter().cloned());
                // The error names the rule Redis refused, never a password (only hashes are here).
                session.command(&command).await.map_err(Error::Node)?;
                keep.push(name.clone());
            }
        }
        // Detached: the default user takes the AUTH token again (or no password), with
        // every command (but writes, read-only).
        None => {
            r.runtime.set_passwords(key, tokens).await.map_err(Error::Node)?;
            if read_only {
                r.runtime.command(key, &["ACL", "SETUSER", "default", READ_ONLY]).await.map_err(Error::Node)?;
            }
        }
    }
    let mut session = r.runtime.session(key).await.map_err(Error::Node)?;
    let existing = match session.command(&["ACL", "USERS"]).await.map_err(Error::Node)? {
        Reply::Array(Some(names)) => names.iter().filter_map(Reply::as_text).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    for name in existing.iter().filter(|name| !keep.contains(name)) {
        session.command(&["ACL", "DELUSER", name]).await.map_err(Error::Node)?;
    }
    Ok(())
}
