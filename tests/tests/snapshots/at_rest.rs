//! At-rest encryption: a group created with AtRestEncryptionEnabled (and a KmsKeyId) shows
//! both, and its snapshot files under the state directory are stored encrypted — no RDB
//! magic, no data in clear — yet restore into new groups and clusters, copy (still
//! encrypted) and export (a plain RDB, as AWS exports). Unencrypted sources keep plain RDB
//! files, and a group restored from an encrypted snapshot follows its own setting.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::ReplicationGroup;
use e2e::cluster::{cluster_connection, missing_keys};
use e2e::{TestServer, expect_code};

use crate::*;

const KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// The encrypted file format's magic (crates/reconciler/src/at_rest.rs).
const MAGIC: &[u8] = b"ECLOCAL-ATREST\x00\x01";

async fn encrypted_group(client: &Client, id: &str, members: i32, kms: Option<&str>) -> ReplicationGroup {
    client
        .create_replication_group()
        .replication_group_id(id)
        .replication_group_description(format!("encrypted {id}"))
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(members)
        .automatic_failover_enabled(members > 1)
        .at_rest_encryption_enabled(true)
        .set_kms_key_id(kms.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateReplicationGroup {id}: {e:?}"))
        .replication_group
        .expect("CreateReplicationGroup returned no ReplicationGroup")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The file is in the encrypted format and shows none of the data written with `tag`.
#[track_caller]
fn assert_encrypted(path: &Path, tag: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(!bytes.starts_with(b"REDIS"), "{} is a plain RDB file", path.display());
    assert!(bytes.starts_with(MAGIC), "{} lacks the encrypted format's magic", path.display());
    for i in [0, 1, 500, KEYS - 1] {
        assert!(!contains(&bytes, &key(i)), "{} shows {} in clear", path.display(), key(i));
        assert!(!contains(&bytes, &value(tag, i)), "{} shows a value in clear", path.display());
    }
    bytes
}

/// Nothing but the shard files in a snapshot's directory: no temporary or plaintext file.
#[track_caller]
fn assert_only_shard_files(server: &TestServer, name: &str, shards: &[&str]) {
    let found: Vec<String> = files_under(&snapshot_dir(server, name))
        .iter()
        .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = shards.iter().map(|s| format!("{s}.rdb")).collect();
    assert_eq!(found, expected, "files of snapshot {name}");
}

#[tokio::test]
async fn an_encrypted_groups_snapshots_are_encrypted_and_restore_everywhere() {
    let server = TestServer::start().await;
    let client = server.client();

    let created = encrypted_group(&client, "enc", 2, Some(KMS_KEY)).await;
    assert_eq!(created.at_rest_encryption_enabled(), Some(true));
    assert_eq!(created.kms_key_id(), Some(KMS_KEY));
    assert_eq!(created.transit_encryption_enabled(), Some(false), "transit encryption is another setting");
    let g = wait_group_available(&client, "enc").await;
    assert_eq!(g.at_rest_encryption_enabled(), Some(true));
    assert_eq!(g.kms_key_id(), Some(KMS_KEY));
    // Terraform reads it from the first member cluster.
    for member in g.member_clusters() {
        assert_eq!(describe_cluster(&client, member).await.at_rest_encryption_enabled(), Some(true), "{member}");
    }
    let (_, port) = primary_of(&g);
    write_keys(&mut wait_redis(port).await, "sec").await;
    for (_, _, port) in group_members(&g) {
        wait_keys(port, "sec").await;
    }

    snapshot_of_group(&client, "enc-snap", "enc").await;
    let s = wait_snapshot(&client, "enc-snap").await;
    assert_eq!(s.kms_key_id(), Some(KMS_KEY), "{s:?}");
    assert!(s.node_snapshots()[0].cache_size().is_some(), "{s:?}");
    let encrypted = assert_encrypted(&snapshot_file(&server, "enc-snap"), "sec");
    assert_only_shard_files(&server, "enc-snap", &["0001"]);
    let key_file = server.state_path().join("keys").join("at-rest.key");
    assert_eq!(std::fs::metadata(&key_file).expect("the at-rest key").len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    // Restored into a plain group and a plain cluster: every key, and their own snapshots are
    // plain RDB files (the new group's setting decides, as on AWS).
    create_group(&client, "back", 2, Some("enc-snap")).await;
    let back = wait_group_available(&client, "back").await;
    assert_eq!(back.at_rest_encryption_enabled(), Some(false));
    assert_eq!(back.kms_key_id(), None);
    for (_, _, port) in group_members(&back) {
        wait_keys(port, "sec").await;
    }
    create_redis(&client, "back-c", Some("enc-snap")).await;
    let c = wait_cluster_available(&client, "back-c").await;
    assert_eq!(c.at_rest_encryption_enabled(), Some(false), "CreateCacheCluster has no at-rest encryption");
    wait_keys(node_port(&c), "sec").await;
    snapshot_of_group(&client, "back-snap", "back").await;
    let plain = wait_snapshot(&client, "back-snap").await;
    assert_eq!(plain.kms_key_id(), None);
    let rdb = assert_rdb(&snapshot_file(&server, "back-snap"));
    assert!(contains(&rdb, &key(500)), "a plain RDB shows its keys");

    // Restored into another encrypted group (service-managed key): keys, and encrypted files.
    let again = client
        .create_replication_group()
        .replication_group_id("enc-again")
        .replication_group_description("d")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(1)
        .at_rest_encryption_enabled(true)
        .snapshot_name("enc-snap")
        .send()
        .await
        .expect("CreateReplicationGroup from an encrypted snapshot");
    assert_eq!(again.replication_group().and_then(|g| g.kms_key_id()), None);
    let again = wait_group_available(&client, "enc-again").await;
    wait_keys(primary_of(&again).1, "sec").await;
    snapshot_of_group(&client, "again-snap", "enc-again").await;
    assert_eq!(wait_snapshot(&client, "again-snap").await.kms_key_id(), None);
    assert_encrypted(&snapshot_file(&server, "again-snap"), "sec");

    // CopySnapshot keeps it encrypted, with its key; the copy restores.
    client
        .copy_snapshot()
        .source_snapshot_name("enc-snap")
        .target_snapshot_name("enc-copy")
        .send()
        .await
        .expect("CopySnapshot");
    let copy = wait_snapshot(&client, "enc-copy").await;
    assert_eq!(copy.kms_key_id(), Some(KMS_KEY));
    assert_eq!(assert_encrypted(&snapshot_file(&server, "enc-copy"), "sec"), encrypted);
    assert_only_shard_files(&server, "enc-copy", &["0001"]);
    create_redis(&client, "from-copy", Some("enc-copy")).await;
    wait_keys(node_port(&wait_cluster_available(&client, "from-copy").await), "sec").await;

    // An export is a usable, plain RDB file, as AWS exports one; it seeds a new group.
    client
        .copy_snapshot()
        .source_snapshot_name("enc-snap")
        .target_snapshot_name("out")
        .target_bucket("enc-bucket")
        .send()
        .await
        .expect("CopySnapshot with TargetBucket");
    let exported = server.state_path().join("exports").join("enc-bucket").join("out-0001.rdb");
    poll_until("the export is written", SETTLE, || async {
        let s = describe_snapshot(&client, "enc-snap").await;
        if s.snapshot_status() == Some("available") && exported.is_file() { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    let rdb = assert_rdb(&exported);
    assert!(contains(&rdb, &key(500)), "the export holds the data");
    assert_eq!(files_under(exported.parent().unwrap()).len(), 1, "no temporary files in the bucket");
    client
        .create_replication_group()
        .replication_group_id("from-export")
        .replication_group_description("d")
        .cache_node_type("cache.t3.micro")
        .num_cache_clusters(1)
        .snapshot_arns("arn:aws:s3:::enc-bucket/out-0001.rdb")
        .send()
        .await
        .expect("CreateReplicationGroup from the export");
    let g = wait_group_available(&client, "from-export").await;
    wait_keys(primary_of(&g).1, "sec").await;

    // With a KmsKeyId the export is what a reader of an SSE-KMS object gets: the plain RDB.
    let out = client
        .copy_snapshot()
        .source_snapshot_name("enc-snap")
        .target_snapshot_name("out-kms")
        .target_bucket("enc-bucket")
        .kms_key_id(KMS_KEY)
        .send()
        .await
        .expect("CopySnapshot with TargetBucket and KmsKeyId");
    assert_eq!(out.snapshot().and_then(|s| s.kms_key_id()), Some(KMS_KEY));
    let exported = server.state_path().join("exports").join("enc-bucket").join("out-kms-0001.rdb");
    poll_until("the KMS export is written", SETTLE, || async {
        let s = describe_snapshot(&client, "enc-snap").await;
        if s.snapshot_status() == Some("available") && exported.is_file() { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert!(contains(&assert_rdb(&exported), &key(500)), "the KMS export holds the data");
}

#[tokio::test]
async fn kms_key_rules_and_kms_snapshots_of_plain_sources() {
    let server = TestServer::start().await;
    let client = server.client();
    let base = |id: &str| {
        client
            .create_replication_group()
            .replication_group_id(id)
            .replication_group_description("d")
            .cache_node_type("cache.t3.micro")
            .num_cache_clusters(1)
    };
    // A KMS key goes only with at-rest encryption, and must look like one.
    expect_code(base("k1").kms_key_id(KMS_KEY).send().await, "InvalidParameterCombination");
    expect_code(
        base("k2").at_rest_encryption_enabled(false).kms_key_id(KMS_KEY).send().await,
        "InvalidParameterCombination",
    );
    for bad in ["key", "alias/", "arn:aws:kms:us-east-1:1:key/x"] {
        let e =
            expect_code(base("k3").at_rest_encryption_enabled(true).kms_key_id(bad).send().await, "InvalidKMSKeyFault");
        assert_eq!(e.status, 400, "{bad}: {e:?}");
    }
    assert!(client.describe_replication_groups().send().await.unwrap().replication_groups().is_empty());
    // Every form KMS accepts; shown as given.
    for (id, kms) in [("k4", "alias/app-cache"), ("k5", "1234abcd-12ab-34cd-56ef-1234567890ab")] {
        let g = encrypted_group(&client, id, 1, Some(kms)).await;
        assert_eq!(g.kms_key_id(), Some(kms));
    }
    let g = encrypted_group(&client, "k6", 1, None).await;
    assert_eq!((g.at_rest_encryption_enabled(), g.kms_key_id()), (Some(true), None));
    // An existing cluster's data was never encrypted: it cannot be adopted by an encrypted group.
    let port = redis_with_keys(&client, "plain", "pl").await;
    expect_code(
        client
            .create_replication_group()
            .replication_group_id("adopt")
            .replication_group_description("d")
            .primary_cluster_id("plain")
            .at_rest_encryption_enabled(true)
            .send()
            .await,
        "InvalidParameterCombination",
    );
    assert_eq!(describe_cluster(&client, "plain").await.at_rest_encryption_enabled(), Some(false));

    // A plain cluster's snapshot is a plain RDB; with a KmsKeyId it is stored encrypted.
    snapshot_of_cluster(&client, "plain-snap", "plain").await;
    assert_eq!(wait_snapshot(&client, "plain-snap").await.kms_key_id(), None);
    assert_rdb(&snapshot_file(&server, "plain-snap"));
    assert!(!server.state_path().join("keys").exists(), "no key before anything is encrypted");
    client
        .create_snapshot()
        .snapshot_name("kms-snap")
        .cache_cluster_id("plain")
        .kms_key_id("alias/backups")
        .send()
        .await
        .expect("CreateSnapshot with KmsKeyId");
    assert_eq!(wait_snapshot(&client, "kms-snap").await.kms_key_id(), Some("alias/backups"));
    assert_encrypted(&snapshot_file(&server, "kms-snap"), "pl");
    // CopySnapshot with a KmsKeyId encrypts a plain snapshot's copy.
    client
        .copy_snapshot()
        .source_snapshot_name("plain-snap")
        .target_snapshot_name("plain-copy")
        .kms_key_id(KMS_KEY)
        .send()
        .await
        .expect("CopySnapshot with KmsKeyId");
    assert_eq!(wait_snapshot(&client, "plain-copy").await.kms_key_id(), Some(KMS_KEY));
    assert_encrypted(&snapshot_file(&server, "plain-copy"), "pl");
    create_redis(&client, "from-kms", Some("plain-copy")).await;
    wait_keys(node_port(&wait_cluster_available(&client, "from-kms").await), "pl").await;
    wait_keys(port, "pl").await;
}

#[tokio::test]
async fn an_encrypted_sharded_group_restores_into_other_shard_counts() {
    let server = TestServer::start().await;
    let client = server.client();
    let sharded = |id: &str, encrypted: bool, snapshot: Option<&str>| {
        client
            .create_replication_group()
            .replication_group_id(id)
            .replication_group_description("sharded")
            .cache_node_type("cache.t3.micro")
            .num_node_groups(2)
            .replicas_per_node_group(0)
            .at_rest_encryption_enabled(encrypted)
            .set_snapshot_name(snapshot.map(str::to_string))
            .send()
    };
    sharded("shards", true, None).await.expect("CreateReplicationGroup");
    let g = wait_group_available(&client, "shards").await;
    assert_eq!(g.at_rest_encryption_enabled(), Some(true));
    let port = g.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let mut con = cluster_connection(port).await.expect("cluster client");
    e2e::cluster::write_keys(&mut con, 0..KEYS).await.expect("writes");

    snapshot_of_group(&client, "shards-snap", "shards").await;
    wait_snapshot(&client, "shards-snap").await;
    for shard in ["0001", "0002"] {
        let path = snapshot_dir(&server, "shards-snap").join(format!("{shard}.rdb"));
        let bytes = std::fs::read(&path).expect("shard file");
        assert!(bytes.starts_with(MAGIC) && !bytes.starts_with(b"REDIS"), "{} not encrypted", path.display());
        assert!(!contains(&bytes, &e2e::cluster::value(7)), "{} shows a value in clear", path.display());
    }
    assert_only_shard_files(&server, "shards-snap", &["0001", "0002"]);

    sharded("restored", false, Some("shards-snap")).await.expect("CreateReplicationGroup from the snapshot");
    let r = wait_group_available(&client, "restored").await;
    let port = r.configuration_endpoint().and_then(|e| e.port()).expect("configuration endpoint") as u16;
    let mut con = cluster_connection(port).await.expect("cluster client");
    assert_eq!(missing_keys(&mut con, 0..KEYS).await, Vec::<String>::new());
}
