//! Online migration into a serverless cache (PrepareMigration, StartMigration,
//! StopMigration, CompleteMigration with a ServerlessCacheName): AWS's checks, and the
//! migration recorded on the cache for the reconciler (`reconciler::serverless_migration`),
//! which checks the source, copies and follows its data, serves it through the cache's own
//! endpoint meanwhile, and cuts over.
//!
//! AWS's rules, from the user guide's "Online migration to ElastiCache Serverless" pages
//! and the API reference of the four operations:
//! - ElastiCache Serverless for Valkey only; the cache available and empty; one endpoint
//!   in CustomerNodeEndpointList ("For serverless cache migrations, the list should have
//!   only one element"); StartMigration uses the endpoint given to PrepareMigration.
//! - "A migration is already in progress for this serverless cache. You cannot start
//!   another migration until the current one completes"
//!   (ServerlessCacheAlreadyUnderMigrationFault).
//! - StopMigration "is valid only while the migration is syncing; during cutover it returns
//!   InvalidServerlessCacheStateFault"; "The migration remains open and the data sync can be
//!   restarted"; "After StopMigration, StartMigration requires [ClearTargetCacheData] to
//!   restart the data sync".
//! - CompleteMigration cuts over "at the next fully synced window"; MigrationHealthFault:
//!   "The migration is not healthy. … For CompleteMigration, set Force to true to bypass
//!   this check."
//! - The source's credentials come from a Secrets Manager secret ("ElastiCache does not
//!   accept credentials directly"). The emulator has no Secrets Manager: it takes the ARN
//!   and reads the secret's SecretString from `<state dir>/secretsmanager/<region>/
//!   <account>/<secret id>.json` when it prepares the migration (`reconciler::
//!   serverless_migration` says so in the event when the file is missing).
//!
//! The cache's own status while a migration is open is the emulator's choice (the pages
//! say only that a failed preparation leaves the cache `available` again): `modifying`
//! while the migration is being prepared and while it cuts over, `available` otherwise; the
//! migration's own stage is `ServerlessCache.Migration.Status`. Wording of refusals is the
//! emulator's unless a comment names a source.

use model::status::cluster as status;
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{MigrationStage, ServerlessCacheRecord, ServerlessMigration};

use crate::Operations;
use crate::arn::{Kind, NotFound as _};
use crate::serverless::{existing, output};

fn not_under_migration(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ServerlessCacheNotUnderMigrationFault,
        format!("Serverless cache {name} is not under migration."),
    )
}

fn invalid_state(name: &str, why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidServerlessCacheStateFault, format!("Serverless cache {name} {why}."))
}

/// The one source endpoint of PrepareMigration's CustomerNodeEndpointList.
fn source(list: &[CustomerNodeEndpoint]) -> Result<(String, u16), ApiError> {
    if list.len() != 1 {
        return Err(ApiError::invalid_parameter_value(
            "For serverless cache migrations, CustomerNodeEndpointList should have only one element.",
        ));
    }
    crate::migration::source(Some(list))
}

/// SourceAuthenticationConfiguration: the ARN of a Secrets Manager secret.
fn secret_arn(auth: Option<&SourceAuthenticationConfiguration>) -> Result<Option<String>, ApiError> {
    let Some(auth) = auth else { return Ok(None) };
    let arn = auth.secret_manager_config.as_ref().and_then(|c| c.secret_arn.as_deref()).unwrap_or_default();
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", _, "secretsmanager", region, account, "secret", id]
        if !region.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty());
    if !valid {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid SecretArn {arn}: SourceAuthenticationConfiguration needs the ARN of a Secrets Manager secret."
        )));
    }
    Ok(Some(arn.to_string()))
}

/// SourceTlsConfiguration: `verify-ca` with the PEM certificate that signed the source's
/// (the emulator reaches the source at its IP address, which the certificate must name),
/// or `none`.
fn tls_ca(tls: Option<&SourceTlsConfiguration>) -> Result<Option<String>, ApiError> {
    let Some(tls) = tls else { return Ok(None) };
    let certificate = tls.source_tls_certificate.as_deref().map(str::trim).filter(|c| !c.is_empty());
    match (tls.source_tls_mode, certificate) {
        (Some(TlsMode::VerifyCa), Some(pem)) if pem.starts_with("-----BEGIN CERTIFICATE-----") => Ok(Some(pem.into())),
        (Some(TlsMode::VerifyCa), Some(_)) => {
            Err(ApiError::invalid_parameter_value("SourceTlsCertificate must be a PEM-encoded certificate."))
        }
        (Some(TlsMode::VerifyCa), None) => {
            Err(ApiError::invalid_parameter_value("SourceTlsMode verify-ca needs a SourceTlsCertificate."))
        }
        (_, Some(_)) => {
            Err(ApiError::invalid_parameter_value("SourceTlsCertificate is only taken with SourceTlsMode verify-ca."))
        }
        (_, None) => Ok(None),
    }
}

/// Whether `cache` can take a migration: Valkey, available, none open already.
fn check_target(cache: &ServerlessCacheRecord) -> Result<(), ApiError> {
    if cache.engine != "valkey" {
        return Err(ApiError::invalid_parameter_value(format!(
            "Online migration is supported for ElastiCache Serverless for Valkey only; serverless cache {} runs {}.",
            cache.name, cache.engine
        )));
    }
    if cache.migration.is_some() {
        return Err(ApiError::new(
            ErrorCode::ServerlessCacheAlreadyUnderMigrationFault,
            format!(
                "A migration is already in progress for serverless cache {}. You cannot start another migration until the current one completes.",
                cache.name
            ),
        ));
    }
    if cache.status != status::AVAILABLE {
        return Err(invalid_state(
            &cache.name,
            &format!("is not in available state (current state: {})", cache.status),
        ));
    }
    Ok(())
}

/// Logs a cache's status change and makes it.
fn set_status(cache: &mut ServerlessCacheRecord, to: &str) {
    if cache.status != to {
        tracing::info!(serverless_cache = cache.name, from = cache.status, to, "serverless cache status");
        cache.status = to.to_string();
    }
}

/// Applies `change` to the migration of the cache `name`, answering the cache as it is then.
async fn change(
    ops: &Operations,
    scope: &store::Scope,
    name: &str,
    change: impl FnOnce(&mut ServerlessCacheRecord) -> Result<(), ApiError>,
) -> Result<ServerlessCache, ApiError> {
    let result = ops
        .store
        .update_serverless_cache(scope, name, |cache| {
            if cache.migration.is_none() {
                return Err(not_under_migration(&cache.name));
            }
            change(cache).map(|()| Vec::new())
        })
        .await;
    let cache = crate::updated(result, || Kind::ServerlessCache.not_found(name))?;
    Ok(output(scope, &cache, ops.endpoint_host()))
}

pub async fn prepare(
    ops: &Operations,
    ctx: &RequestContext,
    input: PrepareMigrationRequest,
) -> Result<PrepareMigrationResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.serverless_cache_name.to_ascii_lowercase();
    let (address, port) = source(&input.customer_node_endpoint_list)?;
    let secret_arn = secret_arn(input.source_authentication_configuration.as_ref())?;
    let tls_ca = tls_ca(input.source_tls_configuration.as_ref())?;
    check_target(&existing(ops, &scope, &name).await?)?;
    let result = ops
        .store
        .update_serverless_cache(&scope, &name, |cache| {
            check_target(cache)?;
            cache.migration = Some(ServerlessMigration {
                address: address.clone(),
                port,
                secret_arn: secret_arn.clone(),
                tls_ca: tls_ca.clone(),
                phase: MigrationStage::Preparing,
                auto_cutover: false,
            });
            set_status(cache, status::MODIFYING);
            Ok(Vec::new())
        })
        .await;
    let cache = crate::updated(result, || Kind::ServerlessCache.not_found(&name))?;
    Ok(PrepareMigrationResponse { serverless_cache: Some(output(&scope, &cache, ops.endpoint_host())) })
}

/// StartMigration with a ServerlessCacheName: the data sync begins (again).
pub async fn start(
    ops: &Operations,
    ctx: &RequestContext,
    name: &str,
    input: &StartMigrationMessage,
) -> Result<StartMigrationResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = name.to_ascii_lowercase();
    let clear = input.clear_target_cache_data.unwrap_or(false);
    let auto_cutover = input.auto_cutover.unwrap_or(false);
    let cache = change(ops, &scope, &name, |cache| {
        let Some(migration) = cache.migration.as_mut() else { return Err(not_under_migration(&name)) };
        match migration.phase {
            MigrationStage::Prepared | MigrationStage::Failed => {}
            MigrationStage::Stopped if clear => {}
            MigrationStage::Stopped => {
                return Err(ApiError::invalid_parameter_combination(format!(
                    "The data sync of serverless cache {name} was stopped: StartMigration needs ClearTargetCacheData to restart it."
                )));
            }
            MigrationStage::Preparing => return Err(invalid_state(&name, "is still being prepared for migration")),
            MigrationStage::Syncing { .. } | MigrationStage::InSync => {
                return Err(invalid_state(&name, "is already syncing data from the source"));
            }
            MigrationStage::CuttingOver { .. } => return Err(invalid_state(&name, "is cutting over")),
        }
        if cache.status != status::AVAILABLE {
            return Err(invalid_state(&name, &format!("is not in available state (current state: {})", cache.status)));
        }
        migration.phase = MigrationStage::Syncing { clear, started: false };
        migration.auto_cutover = auto_cutover;
        tracing::info!(serverless_cache = name, clear, auto_cutover, "serverless migration: data sync asked for");
        Ok(())
    })
    .await?;
    Ok(StartMigrationResponse { replication_group: None, serverless_cache: Some(cache) })
}

pub async fn stop(
    ops: &Operations,
    ctx: &RequestContext,
    input: StopMigrationRequest,
) -> Result<StopMigrationResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = input.serverless_cache_name.to_ascii_lowercase();
    let cache = change(ops, &scope, &name, |cache| {
        let Some(migration) = cache.migration.as_mut() else { return Err(not_under_migration(&name)) };
        match migration.phase {
            MigrationStage::Syncing { .. } | MigrationStage::InSync => {
                migration.phase = MigrationStage::Stopped;
                Ok(())
            }
            MigrationStage::CuttingOver { .. } => Err(invalid_state(&name, "is cutting over")),
            _ => Err(invalid_state(&name, "is not syncing data from the source")),
        }
    })
    .await?;
    Ok(StopMigrationResponse { serverless_cache: Some(cache) })
}

/// CompleteMigration with a ServerlessCacheName: the cutover, at the next moment the cache
/// holds all the source does (at once with Force).
pub async fn complete(
    ops: &Operations,
    ctx: &RequestContext,
    name: &str,
    force: bool,
) -> Result<CompleteMigrationResponse, ApiError> {
    let scope = ops.scope(ctx).await?;
    let name = name.to_ascii_lowercase();
    let cache = change(ops, &scope, &name, |cache| {
        let Some(migration) = cache.migration.as_mut() else { return Err(not_under_migration(&name)) };
        match migration.phase {
            MigrationStage::Syncing { .. } | MigrationStage::InSync => {}
            MigrationStage::Failed if !force => {
                return Err(ApiError::new(
                    ErrorCode::MigrationHealthFault,
                    format!(
                        "The migration of serverless cache {name} is not healthy. Check the events for this serverless cache for more details. For CompleteMigration, set Force to true to bypass this check."
                    ),
                ));
            }
            MigrationStage::Prepared | MigrationStage::Stopped if !force => {
                return Err(invalid_state(&name, "is not syncing data from the source (set Force to cut over anyway)"));
            }
            MigrationStage::Prepared | MigrationStage::Stopped | MigrationStage::Failed => {}
            MigrationStage::Preparing => return Err(invalid_state(&name, "is still being prepared for migration")),
            MigrationStage::CuttingOver { .. } => return Err(invalid_state(&name, "is already cutting over")),
        }
        migration.phase = MigrationStage::CuttingOver { force };
        set_status(cache, status::MODIFYING);
        Ok(())
    })
    .await?;
    Ok(CompleteMigrationResponse { replication_group: None, serverless_cache: Some(cache) })
}

/// Refuses a change to a cache that a migration is open on (ModifyServerlessCache): the
/// source's data is on its way into what the change would alter.
pub(crate) fn refuse_while_migrating(cache: &ServerlessCacheRecord) -> Result<(), ApiError> {
    match &cache.migration {
        Some(m) => Err(invalid_state(&cache.name, &format!("is under migration ({})", m.phase.as_str()))),
        None => Ok(()),
    }
}

/// `ServerlessCache.Migration`, from the record (its endpoint on `host`).
pub(crate) fn summary(cache: &ServerlessCacheRecord, host: &str) -> Option<MigrationSummary> {
    let migration = cache.migration.as_ref()?;
    Some(MigrationSummary {
        // "Manual cutover is the default" (user guide, "Cutover modes").
        cutover_mode: Some(if migration.auto_cutover { "auto" } else { "manual" }.to_string()),
        migration_endpoint: crate::replication_groups::endpoint(host, cache.endpoint_port),
        status: Some(migration.phase.as_str().to_string()),
    })
}
