//! Global datastores: replication groups of several regions linked into one, the primary
//! region's group taking writes and each secondary region's group replicating from it.
//!
//! The datastore's own document names its members and their roles; what they hold (engine,
//! version, node type, shards, encryption) is read from the primary group itself, so the
//! two cannot disagree. A secondary joins through CreateReplicationGroup with
//! `GlobalReplicationGroupId` (see [`secondary`]); the reconciler links it to the primary,
//! reports the members `associated`, and carries out failovers and disassociations.
//!
//! # Layout
//! - this module: create, describe, delete, disassociate, failover, and the Describe form.
//! - [`secondary`]: what a secondary group inherits and may not be given.
//! - [`changes`]: ModifyGlobalReplicationGroup and the cluster-mode node-group operations,
//!   applied to every member in one write.

pub(crate) mod changes;
pub(crate) mod secondary;

use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{
    GlobalMemberRecord, GlobalReplicationGroupRecord, GlobalRole, ReplicationGroup as StoredGroup, Scope, now_millis,
};

use crate::cache_clusters::status;
use crate::pagination::paginate;
use crate::{Operations, internal, refuse, written};

pub use model::status::global as global_status;

/// AWS's prefix of a global datastore id created in each region ("Using global datastores
/// (CLI)", ElastiCache user guide). A region missing from AWS's table gets a prefix of the
/// emulator's own: five letters derived from its name.
const REGION_PREFIXES: &[(&str, &str)] = &[
    ("us-east-2", "fpkhr"),
    ("us-east-1", "ldgnf"),
    ("us-west-1", "virxk"),
    ("us-west-2", "sgaui"),
    ("ca-central-1", "bxodz"),
    ("ap-south-1", "erpgt"),
    ("ap-northeast-1", "quwsw"),
    ("ap-northeast-2", "lfqnh"),
    ("ap-northeast-3", "nlapn"),
    ("ap-southeast-1", "vlqxn"),
    ("ap-southeast-2", "vbgxd"),
    ("eu-central-1", "iudkw"),
    ("eu-west-1", "gxeiz"),
    ("eu-west-2", "okuqm"),
    ("eu-west-3", "fgjhi"),
    ("sa-east-1", "juxlw"),
    ("cn-north-1", "emvgo"),
    ("cn-northwest-1", "ckbem"),
    ("ap-east-1", "knjmp"),
    // The table's last row, as a third-party copy of it has it (the AWS page is cut there).
    ("us-gov-west-1", "sgwui"),
];

/// At most this many secondary regions (AWS: a global datastore spans up to three regions).
pub(crate) const MAX_SECONDARIES: usize = 2;

pub(crate) fn region_prefix(region: &str) -> String {
    if let Some((_, prefix)) = REGION_PREFIXES.iter().find(|(r, _)| *r == region) {
        return (*prefix).to_string();
    }
    // FNV-1a: stable across runs and builds, unlike the standard hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in region.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..5).map(|i| char::from(b'a' + ((hash >> (i * 8)) % 26) as u8)).collect()
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::GlobalReplicationGroupNotFoundFault, format!("GlobalReplicationGroup {id} not found."))
}

/// AWS's answer to a change asked of a datastore that is busy (API reference,
/// FailoverGlobalReplicationGroup).
pub(crate) fn invalid_state() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidGlobalReplicationGroupStateFault,
        "The Global datastore is not available or in primary-only state.",
    )
}

/// The scope of a member: its region, the datastore's account.
pub(crate) fn member_scope(account: &str, member: &GlobalMemberRecord) -> Scope {
    Scope { region: member.region.clone(), account: account.to_string() }
}

pub(crate) async fn existing(
    ops: &Operations,
    account: &str,
    id: &str,
) -> Result<GlobalReplicationGroupRecord, ApiError> {
    ops.store.global_replication_group(account, id).await.map_err(internal)?.ok_or_else(|| not_found(id))
}

/// A datastore and its member groups (a member whose group is gone shows without one).
pub(crate) struct Linked {
    pub record: GlobalReplicationGroupRecord,
    pub groups: Vec<Option<StoredGroup>>,
}

impl Linked {
    pub(crate) async fn read(
        ops: &Operations,
        account: &str,
        record: GlobalReplicationGroupRecord,
    ) -> Result<Self, ApiError> {
        let mut groups = Vec::new();
        for member in &record.members {
            let scope = member_scope(account, member);
            groups.push(ops.store.replication_group(&scope, &member.replication_group_id).await.map_err(internal)?);
        }
        Ok(Self { record, groups })
    }

    pub(crate) fn primary_group(&self) -> Option<&StoredGroup> {
        self.record
            .members
            .iter()
            .zip(&self.groups)
            .find(|(m, _)| m.role == GlobalRole::Primary)
            .and_then(|(_, g)| g.as_ref())
    }

    /// The Describe form; members only when asked for (`ShowMemberInfo`), as AWS answers.
    pub(crate) fn output(&self, account: &str, show_members: bool) -> GlobalReplicationGroup {
        let record = &self.record;
        let primary = self.primary_group();
        let group = primary.map(|g| &g.group);
        let first_member = primary.and_then(|g| g.members.first()).map(|m| &m.cluster);
        GlobalReplicationGroup {
            arn: Some(model::arn::build_global(account, &record.id)),
            at_rest_encryption_enabled: group.map(|g| g.at_rest_encryption),
            auth_token_enabled: group.map(|g| !g.security.auth_tokens.is_empty()),
            cache_node_type: group.map(|g| g.node_type.clone()),
            cluster_enabled: group.map(|g| g.cluster_enabled()),
            engine: group.map(|g| g.engine.clone()),
            engine_version: first_member.map(|c| c.engine_version.clone()),
            global_node_groups: group.filter(|g| g.cluster_enabled()).map(|g| {
                g.node_groups
                    .iter()
                    .map(|n| GlobalNodeGroup {
                        global_node_group_id: Some(format!("{}-{}", record.id, n.id)),
                        slots: Some(crate::shards::format_slots(&n.slots)),
                    })
                    .collect()
            }),
            global_replication_group_description: Some(record.description.clone()),
            global_replication_group_id: Some(record.id.clone()),
            members: show_members
                .then(|| record.members.iter().zip(&self.groups).map(|(m, g)| member_output(m, g.as_ref())).collect()),
            status: Some(record.status.clone()),
            transit_encryption_enabled: group.map(|g| g.security.transit_encryption),
        }
    }
}

fn member_output(member: &GlobalMemberRecord, group: Option<&StoredGroup>) -> GlobalReplicationGroupMember {
    GlobalReplicationGroupMember {
        automatic_failover: group.map(|g| {
            if g.group.automatic_failover {
                AutomaticFailoverStatus::Enabled
            } else {
                AutomaticFailoverStatus::Disabled
            }
        }),
        replication_group_id: Some(member.replication_group_id.clone()),
        replication_group_region: Some(member.region.clone()),
        role: Some(role_text(member.role).to_string()),
        status: Some(member.status.clone()),
    }
}

/// How AWS spells a role, in members and in a group's GlobalReplicationGroupInfo.
pub(crate) fn role_text(role: GlobalRole) -> &'static str {
    match role {
        GlobalRole::Primary => "PRIMARY",
        GlobalRole::Secondary => "SECONDARY",
    }
}

/// Fills in the GlobalReplicationGroupInfo of groups that are members of a datastore.
pub(crate) async fn with_membership(
    ops: &Operations,
    scope: &Scope,
    mut groups: Vec<ReplicationGroup>,
    stored: &[&StoredGroup],
) -> Result<Vec<ReplicationGroup>, ApiError> {
    for (output, stored) in groups.iter_mut().zip(stored) {
        let Some(id) = &stored.group.global_replication_group_id else { continue };
        let Some(record) = ops.store.global_replication_group(&scope.account, id).await.map_err(internal)? else {
            continue;
        };
        let role = record.member(&scope.region, &stored.group.id).map(|m| role_text(m.role).to_string());
        output.global_replication_group_info = Some(GlobalReplicationGroupInfo {
            global_replication_group_id: Some(id.clone()),
            global_replication_group_member_role: role,
        });
    }
    Ok(groups)
}

pub async fn create(
    ops: &Operations,
    ctx: &RequestContext,
    input: CreateGlobalReplicationGroupMessage,
) -> Result<CreateGlobalReplicationGroupResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let suffix =
        crate::validate::resource_id("GlobalReplicationGroupIdSuffix", &input.global_replication_group_id_suffix, 40)?;
    let id = format!("{}-{suffix}", region_prefix(&scope.region));
    if let Some(description) = &input.global_replication_group_description {
        crate::validate::description_length("GlobalReplicationGroupDescription", description)?;
    }
    let tags = crate::tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let primary_id = input.primary_replication_group_id.to_ascii_lowercase();
    let primary = crate::replication_groups::existing(ops, &scope, &primary_id).await?;
    eligible(ops, &primary)?;
    let record = GlobalReplicationGroupRecord {
        id: id.clone(),
        // AWS answers a single space for no description (its CLI examples; the Terraform
        // provider's `emptyDescription`).
        description: input.global_replication_group_description.clone().unwrap_or_else(|| " ".to_string()),
        status: global_status::CREATING.to_string(),
        members: vec![GlobalMemberRecord {
            region: scope.region.clone(),
            replication_group_id: primary_id.clone(),
            role: GlobalRole::Primary,
            status: global_status::member::ASSOCIATING.to_string(),
            disassociating: false,
        }],
        failover_to: None,
        created_millis: now_millis(),
    };
    let arn = model::arn::build_global(&scope.account, &id);
    written(
        ops.store
            .write(async |tx| {
                tx.create_global_replication_group(&scope.account, &record, &arn, &tags).await.map_err(|e| {
                    crate::answered(e, |e| {
                        matches!(e, store::StoreError::AlreadyExists).then(|| {
                            ApiError::new(
                                ErrorCode::GlobalReplicationGroupAlreadyExistsFault,
                                format!("Global Replication Group {id} already exists."),
                            )
                        })
                    })
                })?;
                let joined = tx.update_replication_group(&scope, &primary_id, |g, _| {
                    if g.status != status::AVAILABLE {
                        return Err(crate::replication_groups::invalid_state(&g.id, &g.status));
                    }
                    if let Some(other) = &g.global_replication_group_id {
                        return Err(already_member(&g.id, other));
                    }
                    g.global_replication_group_id = Some(id.clone());
                    Ok(Vec::new())
                });
                match joined.await? {
                    Some(_) => Ok(()),
                    None => refuse(crate::replication_groups::not_found(&primary_id)),
                }
            })
            .await,
    )?;
    tracing::info!(global_replication_group = id, primary = primary_id, "global replication group: (none) -> creating");
    let linked = Linked::read(ops, &scope.account, record).await?;
    Ok(CreateGlobalReplicationGroupResult { global_replication_group: Some(linked.output(&scope.account, true)) })
}

/// The Terraform provider recognises "is not associated with Global Replication Group" in
/// AWS's answer (the rest of the sentence is the emulator's).
pub(crate) fn not_associated(group: &str, global: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!(
        "Replication group {group} is not associated with Global Replication Group {global}."
    ))
}

/// AWS's answer to a change a member may only get through its datastore (quoted in
/// terraform-provider-aws#22528 and #27875).
pub(crate) fn part_of_global(group: &str, global: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!(
        "Cluster [{group}] is part of a global cluster [{global}]. Request rejected."
    ))
}

pub(crate) fn already_member(group: &str, global: &str) -> ApiError {
    ApiError::invalid_parameter_value(format!(
        "Replication group {group} is already a member of Global replication group {global}."
    ))
}

/// What AWS asks of a group before it can be a global datastore's primary.
fn eligible(ops: &Operations, g: &StoredGroup) -> Result<(), ApiError> {
    let group = &g.group;
    if model::names::is_serverless_backing(&group.id) {
        return Err(crate::replication_groups::not_found(&group.id));
    }
    if group.status != status::AVAILABLE {
        return Err(crate::replication_groups::invalid_state(&group.id, &group.status));
    }
    if let Some(other) = &group.global_replication_group_id {
        return Err(already_member(&group.id, other));
    }
    let version = g.members.first().map(|m| m.cluster.engine_version.as_str()).unwrap_or_default();
    secondary::supported_engine(&group.engine, version)?;
    secondary::supported_node_type(ops, &group.node_type)
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeGlobalReplicationGroupsMessage,
) -> Result<DescribeGlobalReplicationGroupsResult, ApiError> {
    let account = &ctx.account;
    let records = match &input.global_replication_group_id {
        Some(id) => vec![existing(ops, account, id).await?],
        None => ops.store.global_replication_groups(account).await.map_err(internal)?,
    };
    let page = paginate(records, |g| g.id.clone(), input.marker.as_deref(), input.max_records)?;
    let mut out = Vec::new();
    for record in page.items {
        out.push(Linked::read(ops, account, record).await?.output(account, input.show_member_info == Some(true)));
    }
    Ok(DescribeGlobalReplicationGroupsResult { global_replication_groups: Some(out), marker: page.marker })
}

pub async fn delete(
    ops: &Operations,
    ctx: &RequestContext,
    input: DeleteGlobalReplicationGroupMessage,
) -> Result<DeleteGlobalReplicationGroupResult, ApiError> {
    let account = ctx.account.clone();
    let id = input.global_replication_group_id.clone();
    if !input.retain_primary_replication_group {
        return Err(ApiError::invalid_parameter_value(
            "RetainPrimaryReplicationGroup must be true: the primary replication group is kept as a standalone group.",
        ));
    }
    let record = change(ops, &account, &id, |g| {
        if g.secondaries().next().is_some() {
            // AWS's answer, quoted in terraform-provider-aws#18533.
            return Err(ApiError::new(
                ErrorCode::InvalidGlobalReplicationGroupStateFault,
                format!("Cannot delete a global replication group in {} state", g.status),
            ));
        }
        g.status = global_status::DELETING.to_string();
        Ok(())
    })
    .await?;
    let linked = Linked::read(ops, &account, record).await?;
    Ok(DeleteGlobalReplicationGroupResult { global_replication_group: Some(linked.output(&account, true)) })
}

pub async fn disassociate(
    ops: &Operations,
    ctx: &RequestContext,
    input: DisassociateGlobalReplicationGroupMessage,
) -> Result<DisassociateGlobalReplicationGroupResult, ApiError> {
    let account = ctx.account.clone();
    let (region, group) = (input.replication_group_region.clone(), input.replication_group_id.to_ascii_lowercase());
    let record = change(ops, &account, &input.global_replication_group_id, |g| {
        let id = g.id.clone();
        let Some(member) = g.members.iter_mut().find(|m| m.region == region && m.replication_group_id == group) else {
            return Err(not_associated(&group, &id));
        };
        if member.role == GlobalRole::Primary {
            return Err(ApiError::invalid_parameter_value(format!(
                "Replication group {group} is the primary of Global replication group {id}; only a secondary can be disassociated."
            )));
        }
        member.disassociating = true;
        g.status = global_status::MODIFYING.to_string();
        Ok(())
    })
    .await?;
    let linked = Linked::read(ops, &account, record).await?;
    Ok(DisassociateGlobalReplicationGroupResult { global_replication_group: Some(linked.output(&account, true)) })
}

pub async fn failover(
    ops: &Operations,
    ctx: &RequestContext,
    input: FailoverGlobalReplicationGroupMessage,
) -> Result<FailoverGlobalReplicationGroupResult, ApiError> {
    let account = ctx.account.clone();
    let (region, group) = (input.primary_region.clone(), input.primary_replication_group_id.to_ascii_lowercase());
    let record = change(ops, &account, &input.global_replication_group_id, |g| {
        let id = g.id.clone();
        let Some(member) = g.member(&region, &group) else {
            return Err(not_associated(&group, &id));
        };
        if member.role == GlobalRole::Primary {
            return Err(ApiError::invalid_parameter_value(format!(
                "Replication group {group} is already the primary of Global replication group {id}."
            )));
        }
        if member.status != global_status::member::ASSOCIATED || member.disassociating {
            return Err(ApiError::invalid_parameter_value(format!(
                "Replication group {group} is not yet associated with Global Replication Group {id}."
            )));
        }
        g.failover_to = Some(store::GlobalMemberKey { region: region.clone(), replication_group_id: group.clone() });
        g.status = global_status::MODIFYING.to_string();
        Ok(())
    })
    .await?;
    let linked = Linked::read(ops, &account, record).await?;
    Ok(FailoverGlobalReplicationGroupResult { global_replication_group: Some(linked.output(&account, true)) })
}

/// Changes an `available` (or `primary-only`) datastore in one write, then wakes the
/// reconciler.
pub(crate) async fn change(
    ops: &Operations,
    account: &str,
    id: &str,
    change: impl FnOnce(&mut GlobalReplicationGroupRecord) -> Result<(), ApiError>,
) -> Result<GlobalReplicationGroupRecord, ApiError> {
    let record = written(
        ops.store
            .write(async |tx| {
                let updated = tx.update_global_replication_group(account, id, |g| {
                    if !global_status::SETTLED.contains(&g.status.as_str()) {
                        return Err(invalid_state());
                    }
                    change(g)
                });
                match updated.await? {
                    Some(record) => Ok(record),
                    None => refuse(not_found(id)),
                }
            })
            .await,
    )?;
    Ok(record)
}
