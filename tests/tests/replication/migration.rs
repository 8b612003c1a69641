//! Online migration into a replication group from a customer's redis-server (one the test
//! starts on loopback): 100,000 keys and a writer on the source arrive, none lost, the group
//! read-only while it migrates and writable after CompleteMigration; TestMigration's verdicts
//! and AWS's answers to bad requests.

use aws_sdk_elasticache::types::{CustomerNodeEndpoint, SourceType};
use e2e::expect_code;
use e2e::source::SourceRedis;

use crate::support::*;

const KEYS: usize = 100_000;

fn endpoint(port: u16) -> CustomerNodeEndpoint {
    CustomerNodeEndpoint::builder().address("127.0.0.1").port(i32::from(port)).build()
}

async fn dbsize(port: u16) -> Result<usize, String> {
    let mut r = RedisClient::connect("127.0.0.1", port).await.map_err(|e| e.to_string())?;
    r.dbsize().await.map_err(|e| e.to_string())
}

/// The migration of `target` as `/_emulator/topology` lists it under way: (done, total).
async fn migration_progress(addr: std::net::SocketAddr) -> Option<(u64, u64)> {
    let (_, body) = e2e::raw_get(addr, "/_emulator/topology").await.ok()?;
    let topology: serde_json::Value = serde_json::from_str(&body).ok()?;
    let regions = topology["regions"].as_array()?;
    let step = regions
        .iter()
        .flat_map(|r| r["progress"].as_array().into_iter().flatten())
        .find(|s| s["operation"] == "migration" && s["resource"] == "target")?;
    Some((step["done"].as_u64()?, step["total"].as_u64()?))
}

#[tokio::test]
async fn a_group_takes_every_key_of_a_live_source_and_is_writable_after_cutover() {
    let server = e2e::TestServer::start().await;
    let client = server.client();
    let source = SourceRedis::start(&[]).await;
    source.seed(KEYS).await.expect("seed the source");
    create(&client, "target", 2, true, true).await;
    let group = wait_group_available(&client, "target").await;
    let (primary, reader) = (primary_port(&group), reader_port(&group));

    client
        .test_migration()
        .replication_group_id("target")
        .customer_node_endpoint_list(endpoint(source.port))
        .send()
        .await
        .expect("TestMigration");
    wait_event(&client, SourceType::ReplicationGroup, "target", "Test Migration successful for target").await;

    // A writer on the source for the whole migration.
    let writer = source.writer().await;
    let out = client
        .start_migration()
        .replication_group_id("target")
        .customer_node_endpoint_list(endpoint(source.port))
        .send()
        .await
        .expect("StartMigration");
    assert_eq!(out.replication_group().and_then(|g| g.status()), Some("migrating"));
    poll_until("every seeded key on the target", SETTLE, || async {
        let size = dbsize(primary).await?;
        if size >= KEYS { Ok(()) } else { Err(format!("{size} keys")) }
    })
    .await;
    // Read-only while it migrates, as on AWS.
    let mut target = RedisClient::connect("127.0.0.1", primary).await.expect("primary endpoint");
    let refused = target.set("mine", "x").await.expect_err("a write while migrating");
    assert!(refused.to_string().contains("READONLY"), "{refused}");

    let last = writer.stop().await.expect("every write to the source acknowledged");
    assert!(last > 0, "the writer wrote during the migration");
    wait_read(primary, &format!("live:{}", last - 1), &(last - 1).to_string()).await;
    // How far it is, for `status` and the dashboard: the source's replication offset reached.
    poll_until("the migration's progress at the source's offset", SETTLE, || async {
        match migration_progress(server.addr()).await {
            Some((done, total)) if total > 0 && done == total => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    client.complete_migration().replication_group_id("target").send().await.expect("CompleteMigration");
    wait_event(&client, SourceType::ReplicationGroup, "target", "Complete Migration successful for target").await;
    wait_group_available(&client, "target").await;
    assert_eq!(migration_progress(server.addr()).await, None, "no progress listed once it is over");

    // Every key arrived, on the primary and through the reader endpoint; writes go in again.
    let expected = KEYS + last;
    assert_eq!(dbsize(primary).await.expect("DBSIZE"), expected, "no key lost");
    poll_until("every key on the replica", SETTLE, || async {
        let size = dbsize(reader).await?;
        if size == expected { Ok(()) } else { Err(format!("{size} of {expected}")) }
    })
    .await;
    for i in (0..KEYS).step_by(997) {
        wait_read(primary, &format!("key:{i}"), &i.to_string()).await;
    }
    wait_write(primary, "mine", "x").await;
}

#[tokio::test]
async fn migration_refusals_and_failures_answer_as_aws_does() {
    let server = e2e::TestServer::start().await;
    let client = server.client();
    let start = |id: &str, endpoints: Vec<CustomerNodeEndpoint>| {
        client.start_migration().replication_group_id(id).set_customer_node_endpoint_list(Some(endpoints)).send()
    };
    let source = SourceRedis::start(&[]).await;
    expect_code(start("nobody", vec![endpoint(source.port)]).await, "ReplicationGroupNotFoundFault");
    create(&client, "single-az", 2, true, false).await;
    create(&client, "target", 2, true, true).await;
    wait_group_available(&client, "single-az").await;
    wait_group_available(&client, "target").await;
    expect_code(start("single-az", vec![endpoint(source.port)]).await, "InvalidParameterCombination");
    let two = vec![endpoint(source.port), endpoint(source.port)];
    expect_code(start("target", two).await, "InvalidParameterValue");
    expect_code(
        client.complete_migration().replication_group_id("target").send().await,
        "ReplicationGroupNotUnderMigrationFault",
    );

    // A source asking for a password: the test says so, nothing else changes.
    let locked = SourceRedis::start(&["--requirepass", "secret-secret-secret"]).await;
    client
        .test_migration()
        .replication_group_id("target")
        .customer_node_endpoint_list(endpoint(locked.port))
        .send()
        .await
        .expect("TestMigration");
    let events = wait_events_matching(&client, "Test Migration failed for target").await;
    assert!(events.iter().any(|e| e.contains("requires authentication")), "{events:?}");

    // A source that is not there: the migration ends, the group is available again.
    let gone = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
    start("target", vec![endpoint(gone)]).await.expect("StartMigration");
    wait_events_matching(&client, "Migration failed for target").await;
    wait_group_available(&client, "target").await;

    // One migration at a time.
    start("target", vec![endpoint(source.port)]).await.expect("StartMigration");
    expect_code(start("target", vec![endpoint(source.port)]).await, "ReplicationGroupAlreadyUnderMigrationFault");
    client.complete_migration().replication_group_id("target").force(true).send().await.expect("CompleteMigration");
    wait_event(&client, SourceType::ReplicationGroup, "target", "Complete Migration successful for target").await;
}

/// Polls until an event of group `target` starts with `prefix`; the events.
async fn wait_events_matching(client: &aws_sdk_elasticache::Client, prefix: &str) -> Vec<String> {
    poll_until(&format!("an event starting {prefix:?}"), SETTLE, || async {
        let events = events_of(client, SourceType::ReplicationGroup, "target").await;
        if events.iter().any(|e| e.starts_with(prefix)) { Ok(events) } else { Err(format!("{events:?}")) }
    })
    .await
}
