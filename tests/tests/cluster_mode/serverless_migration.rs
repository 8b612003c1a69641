//! Online migration into a serverless cache from a customer's redis-server (one the test
//! starts on loopback), through the cache's own endpoint: the endpoint serves the source
//! from PrepareMigration on, the data follows, and the cutover switches the endpoint to the
//! cache while a client keeps writing through it — no error, no acknowledged write lost.
//! AutoCutover, StopMigration and a restart with ClearTargetCacheData, a source asking for
//! a password (the secret read from the state dir), a source over TLS, an emulator restart
//! in the middle, and AWS's answers to bad requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::{
    CustomerNodeEndpoint, SecretManagerAuthConfig, ServerlessCache, SourceAuthenticationConfiguration,
    SourceTlsConfiguration, SourceType, TlsMode,
};
use e2e::source::SourceRedis;
use e2e::tls::{Transport, ca_pem, connect, install_crypto};
use e2e::{SETTLE, TestServer, expect_code, poll_until};
use futures::StreamExt as _;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::serverless::{describe, port, wait_available};

const KEYS: usize = 100_000;
/// The keys of the smaller tests.
const SOME_KEYS: usize = 2_000;
/// A source that starts a full sync at once (redis-server waits 5 s for more replicas).
const PROMPT: &[&str] = &["--repl-diskless-sync-delay", "0"];

fn endpoint(port: u16) -> CustomerNodeEndpoint {
    CustomerNodeEndpoint::builder().address("127.0.0.1").port(i32::from(port)).build()
}

async fn create(client: &Client, name: &str) -> ServerlessCache {
    client.create_serverless_cache().serverless_cache_name(name).engine("valkey").send().await.expect("Create");
    wait_available(client, name).await
}

fn port_of(cache: ServerlessCache) -> u16 {
    port(cache.endpoint())
}

fn migration_status(cache: &ServerlessCache) -> Option<String> {
    cache.migration().and_then(|m| m.status()).map(str::to_string)
}

/// Polls until the cache's migration is in `stage` (None: no migration any more) and the
/// cache itself `available`.
async fn wait_stage(client: &Client, name: &str, stage: Option<&str>) -> ServerlessCache {
    poll_until(&format!("migration of {name} at {stage:?}"), SETTLE, || async {
        let cache = describe(client, name).await;
        let status = migration_status(&cache);
        if status.as_deref() == stage && cache.status() == Some("available") {
            Ok(cache)
        } else {
            Err(format!("{:?}, migration {status:?}", cache.status()))
        }
    })
    .await
}

/// Polls until an event of the cache starts with `prefix`; returns it.
async fn wait_event_starting(client: &Client, name: &str, prefix: &str) -> String {
    poll_until(&format!("an event of {name} starting {prefix:?}"), SETTLE, || async {
        let events = e2e::resources::events_of(client, SourceType::ServerlessCache, name).await;
        events.iter().find(|e| e.starts_with(prefix)).cloned().ok_or(format!("{events:?}"))
    })
    .await
}

async fn prepare(client: &Client, name: &str, source: u16) -> ServerlessCache {
    let out = client
        .prepare_migration()
        .serverless_cache_name(name)
        .customer_node_endpoint_list(endpoint(source))
        .send()
        .await
        .expect("PrepareMigration");
    let cache = out.serverless_cache().expect("cache").clone();
    assert_eq!(cache.status(), Some("modifying"), "AWS's answer at the call");
    assert_eq!(migration_status(&cache).as_deref(), Some("preparing"));
    wait_stage(client, name, Some("prepared")).await
}

/// A client writing `live:<n>` = `<n>` through the cache's endpoint, one acknowledged write
/// after the other, until stopped; it counts its errors and its slowest write.
struct EndpointWriter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>, Duration)>,
}

impl EndpointWriter {
    fn start(mut con: MultiplexedConnection) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let (mut written, mut errors, mut slowest) = (0, Vec::new(), Duration::ZERO);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let set: redis::RedisResult<()> = con.set(format!("live:{written}"), written).await;
                    slowest = slowest.max(started.elapsed());
                    match set {
                        Ok(()) => written += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (written, errors, slowest)
            }
        });
        Self { stop, task }
    }

    /// How many writes were acknowledged (`live:0` … `live:<n-1>`), the errors, the slowest.
    async fn stop(self) -> (usize, Vec<String>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer")
    }
}

/// The keys among `key:<i>` (i below `keys`) and `live:<n>` (n below `live`) that do not
/// read back with their value through `con`.
async fn missing(con: &mut MultiplexedConnection, keys: usize, live: usize) -> Vec<String> {
    let names: Vec<(String, usize)> =
        (0..keys).map(|i| (format!("key:{i}"), i)).chain((0..live).map(|n| (format!("live:{n}"), n))).collect();
    let mut lost = Vec::new();
    for batch in names.chunks(1_000) {
        let mut pipe = redis::pipe();
        for (name, _) in batch {
            pipe.get(name);
        }
        let values: Vec<Option<usize>> = pipe.query_async(con).await.expect("GETs through the endpoint");
        lost.extend(batch.iter().zip(values).filter(|((_, v), got)| *got != Some(*v)).map(|((k, _), _)| k.clone()));
    }
    lost
}

#[tokio::test]
async fn a_live_source_moves_into_a_serverless_cache_through_its_endpoint_without_an_error() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let source = SourceRedis::start(PROMPT).await;
    source.seed(KEYS).await.expect("seed the source");
    let cache = create(&client, "target").await;
    let cache_port = port(cache.endpoint());

    let cache = prepare(&client, "target", source.port).await;
    let summary = cache.migration().expect("migration");
    assert_eq!(summary.cutover_mode(), Some("manual"), "manual cutover is the default");
    assert_eq!(port(summary.migration_endpoint()), cache_port, "the migration endpoint is the cache's own");
    wait_event_starting(&client, "target", "Migration prepared for serverless cache target").await;

    // From now on the endpoint serves the source: its keys, and writes reach it.
    let mut con = connect(cache_port, Transport::Verified(&ca), None).await.expect("TLS connection");
    let size: usize = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert_eq!(size, KEYS, "the endpoint serves the source's data");
    let reader_port = port(cache.reader_endpoint());
    let mut reader = connect(reader_port, Transport::Verified(&ca), None).await.expect("TLS to the reader endpoint");
    let v: Option<usize> = reader.get("key:7").await.expect("GET through the reader endpoint");
    assert_eq!(v, Some(7), "the reader endpoint serves the source too");
    let writer = EndpointWriter::start(con.clone());
    poll_until("a write through the endpoint on the source", SETTLE, || async {
        let mut direct = source.connection().await;
        let v: Option<usize> = direct.get("live:0").await.map_err(|e| e.to_string())?;
        v.map(drop).ok_or("not yet".to_string())
    })
    .await;

    let out = client.start_migration().serverless_cache_name("target").send().await.expect("StartMigration");
    let started = out.serverless_cache().expect("cache");
    assert_eq!(migration_status(started).as_deref(), Some("syncing"));
    assert!(out.replication_group().is_none());
    let began = Instant::now();
    wait_stage(&client, "target", Some("in-sync")).await;
    let synced = began.elapsed();

    let out = client.complete_migration().serverless_cache_name("target").send().await.expect("CompleteMigration");
    assert_eq!(out.serverless_cache().and_then(|c| c.status()), Some("modifying"));
    wait_stage(&client, "target", None).await;
    wait_event_starting(&client, "target", "Migration completed for serverless cache target").await;
    // The writer keeps writing, now into the cache.
    let after = {
        let mut probe = con.clone();
        let mark: usize = redis::cmd("DBSIZE").query_async(&mut probe).await.expect("DBSIZE");
        mark
    };
    poll_until("writes into the cache after the cutover", SETTLE, || async {
        let mut probe = con.clone();
        let size: usize = redis::cmd("DBSIZE").query_async(&mut probe).await.map_err(|e| e.to_string())?;
        if size > after + 100 { Ok(()) } else { Err(format!("{size}")) }
    })
    .await;
    let (written, errors, slowest) = writer.stop().await;
    assert_eq!(errors, Vec::<String>::new(), "no client saw an error through the migration and cutover");
    eprintln!("{KEYS} keys in sync after {synced:?}; {written} writes through the endpoint, the slowest {slowest:?}");

    // Every key is in the cache: the seeded ones, and every acknowledged write.
    assert_eq!(missing(&mut con, KEYS, written).await, Vec::<String>::new(), "no key lost");
    let size: usize = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert_eq!(size, KEYS + written);
    // The source can go: the cache serves on its own.
    drop(source);
    let v: Option<usize> = con.get("key:4242").await.expect("GET after the source is gone");
    assert_eq!(v, Some(4242));
    let () = con.set("after", 1).await.expect("SET after the source is gone");
    let cache = describe(&client, "target").await;
    assert!(cache.migration().is_none(), "{cache:?}");
}

#[tokio::test]
async fn auto_cutover_switches_by_itself_and_a_password_comes_from_the_secret() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let source = SourceRedis::start(&[PROMPT, &["--requirepass", "source-pass-1234"]].concat()).await;
    {
        let client = redis::Client::open(format!("redis://:source-pass-1234@127.0.0.1:{}", source.port)).expect("c");
        let mut con = client.get_multiplexed_async_connection().await.expect("source");
        for batch in (0..SOME_KEYS).step_by(1_000) {
            let mut pipe = redis::pipe();
            for i in batch..batch + 1_000 {
                pipe.set(format!("key:{i}"), i).ignore();
            }
            let () = pipe.query_async(&mut con).await.expect("seed");
        }
    }
    let cache = create(&client, "auto").await;
    let cache_port = port(cache.endpoint());
    let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:source-AbCdEf";
    let auth = SourceAuthenticationConfiguration::builder()
        .secret_manager_config(SecretManagerAuthConfig::builder().secret_arn(arn).build())
        .build();
    let prepare_with_secret = || {
        client
            .prepare_migration()
            .serverless_cache_name("auto")
            .customer_node_endpoint_list(endpoint(source.port))
            .source_authentication_configuration(auth.clone())
            .send()
    };

    // Without a password the source refuses; without the secret in the state dir, too.
    client
        .prepare_migration()
        .serverless_cache_name("auto")
        .customer_node_endpoint_list(endpoint(source.port))
        .send()
        .await
        .expect("PrepareMigration");
    let event = wait_event_starting(&client, "auto", "Migration preparation failed for serverless cache auto").await;
    assert!(event.contains("requires authentication"), "{event}");
    wait_stage(&client, "auto", None).await;
    prepare_with_secret().await.expect("PrepareMigration with a secret");
    poll_until("the missing secret named", SETTLE, || async {
        let events = e2e::resources::events_of(&client, SourceType::ServerlessCache, "auto").await;
        events.iter().find(|e| e.contains("no Secrets Manager")).cloned().ok_or(format!("{events:?}"))
    })
    .await;
    wait_stage(&client, "auto", None).await;

    let dir = server.state_path().join("secretsmanager/us-east-1/000000000000");
    std::fs::create_dir_all(&dir).expect("secrets dir");
    std::fs::write(dir.join("source-AbCdEf.json"), r#"{"password":"source-pass-1234"}"#).expect("secret");
    prepare_with_secret().await.expect("PrepareMigration with a secret");
    wait_stage(&client, "auto", Some("prepared")).await;
    let out = client
        .start_migration()
        .serverless_cache_name("auto")
        .auto_cutover(true)
        .send()
        .await
        .expect("StartMigration AutoCutover");
    assert_eq!(out.serverless_cache().and_then(|c| c.migration()).and_then(|m| m.cutover_mode()), Some("auto"));
    wait_stage(&client, "auto", None).await;
    wait_event_starting(&client, "auto", "Migration completed for serverless cache auto").await;

    drop(source);
    let mut con = connect(cache_port, Transport::Verified(&ca), None).await.expect("TLS connection");
    assert_eq!(missing(&mut con, SOME_KEYS, 0).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_source_over_tls_is_served_and_copied_when_its_certificate_checks_out() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    // The customer's own certificate authority and a certificate for 127.0.0.1.
    let theirs = tempfile::tempdir().expect("tempdir");
    let authority = nodes::tls::CertificateAuthority::load_or_create(&theirs.path().join("ca")).expect("their CA");
    let files = authority.write_node_files(&theirs.path().join("node"), std::net::Ipv4Addr::LOCALHOST).expect("cert");
    let path = |p: &std::path::Path| p.display().to_string();
    let (cert, key, their_ca) = (path(&files.cert), path(&files.key), path(&files.ca));
    // Its plaintext port stays (the helper waits on it); the migration uses the TLS one.
    let tls_args =
        ["--tls-cert-file", &cert, "--tls-key-file", &key, "--tls-ca-cert-file", &their_ca, "--tls-auth-clients", "no"];
    let port = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
    let source = SourceRedis::start(&[PROMPT, &tls_args, &["--tls-port", &port.to_string()]].concat()).await;
    let their_pem = authority.pem().to_string();
    let mut direct = connect(port, Transport::Verified(their_pem.as_bytes()), None).await.expect("TLS to the source");
    for batch in (0..SOME_KEYS).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in batch..batch + 1_000 {
            pipe.set(format!("key:{i}"), i).ignore();
        }
        let () = pipe.query_async(&mut direct).await.expect("seed");
    }
    let cache_port = port_of(create(&client, "secure").await);
    let prepare_with = |pem: &str| {
        client
            .prepare_migration()
            .serverless_cache_name("secure")
            .customer_node_endpoint_list(endpoint(port))
            .source_tls_configuration(
                SourceTlsConfiguration::builder()
                    .source_tls_mode(TlsMode::VerifyCa)
                    .source_tls_certificate(pem)
                    .build(),
            )
            .send()
    };

    // A certificate the source's does not chain to: refused at preparation.
    prepare_with(std::str::from_utf8(&ca).expect("PEM")).await.expect("PrepareMigration");
    let event =
        wait_event_starting(&client, "secure", "Migration preparation failed for serverless cache secure").await;
    assert!(event.contains("cannot connect"), "{event}");
    wait_stage(&client, "secure", None).await;

    prepare_with(&their_pem).await.expect("PrepareMigration");
    wait_stage(&client, "secure", Some("prepared")).await;
    let mut con = connect(cache_port, Transport::Verified(&ca), None).await.expect("TLS to the endpoint");
    let () = con.set("through-tls", 1).await.expect("SET through the endpoint");
    let v: Option<usize> = direct.get("through-tls").await.expect("GET on the source");
    assert_eq!(v, Some(1), "the endpoint reaches the source over TLS");
    client.start_migration().serverless_cache_name("secure").auto_cutover(true).send().await.expect("StartMigration");
    wait_stage(&client, "secure", None).await;
    drop(source);
    assert_eq!(missing(&mut con, SOME_KEYS, 0).await, Vec::<String>::new());
    let v: Option<usize> = con.get("through-tls").await.expect("GET");
    assert_eq!(v, Some(1));
}

#[tokio::test]
async fn a_stopped_data_sync_keeps_serving_the_source_and_restarts_on_a_cleared_cache() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let source = SourceRedis::start(PROMPT).await;
    source.seed(SOME_KEYS).await.expect("seed");
    let cache = create(&client, "pause").await;
    let cache_port = port(cache.endpoint());
    let mut con = connect(cache_port, Transport::Verified(&ca), None).await.expect("TLS");
    prepare(&client, "pause", source.port).await;
    expect_code(
        client.stop_migration().serverless_cache_name("pause").send().await,
        "InvalidServerlessCacheStateFault",
    );
    expect_code(
        client.complete_migration().serverless_cache_name("pause").send().await,
        "InvalidServerlessCacheStateFault",
    );
    client.start_migration().serverless_cache_name("pause").send().await.expect("StartMigration");
    wait_stage(&client, "pause", Some("in-sync")).await;
    expect_code(
        client.start_migration().serverless_cache_name("pause").send().await,
        "InvalidServerlessCacheStateFault",
    );

    let out = client.stop_migration().serverless_cache_name("pause").send().await.expect("StopMigration");
    assert_eq!(out.serverless_cache().and_then(migration_status).as_deref(), Some("stopped"));
    wait_event_starting(&client, "pause", "Data sync stopped for serverless cache pause").await;
    // Still open, still serving the source.
    let () = con.set("while-stopped", 7).await.expect("SET while stopped");
    let mut direct = source.connection().await;
    let v: Option<usize> = direct.get("while-stopped").await.expect("GET on the source");
    assert_eq!(v, Some(7), "the endpoint serves the source while the sync is stopped");
    expect_code(
        client.stop_migration().serverless_cache_name("pause").send().await,
        "InvalidServerlessCacheStateFault",
    );
    // "After StopMigration, StartMigration requires [ClearTargetCacheData]".
    expect_code(client.start_migration().serverless_cache_name("pause").send().await, "InvalidParameterCombination");
    client
        .start_migration()
        .serverless_cache_name("pause")
        .clear_target_cache_data(true)
        .send()
        .await
        .expect("StartMigration ClearTargetCacheData");
    wait_stage(&client, "pause", Some("in-sync")).await;
    // A subscriber through the endpoint hears what is published on the source; at the
    // cutover its connection closes, for it to subscribe again on the cache.
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::TcpTls {
            host: "127.0.0.1".into(),
            port: cache_port,
            insecure: false,
            tls_params: None,
        },
        redis: redis::RedisConnectionInfo::default(),
    };
    let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) };
    let subscriber = redis::Client::build_with_tls(info, certificates).expect("client");
    let mut pubsub = subscriber.get_async_pubsub().await.expect("pubsub through the endpoint");
    pubsub.subscribe("news").await.expect("SUBSCRIBE");
    let mut messages = pubsub.into_on_message();
    let heard: usize = direct.publish("news", "on the source").await.expect("PUBLISH");
    assert_eq!(heard, 1, "the subscriber is on the source");
    let message = tokio::time::timeout(SETTLE, messages.next()).await.expect("a message").expect("open");
    assert_eq!(message.get_payload::<String>().expect("payload"), "on the source");
    client.complete_migration().serverless_cache_name("pause").send().await.expect("CompleteMigration");
    wait_stage(&client, "pause", None).await;
    let ended = tokio::time::timeout(SETTLE, messages.next()).await.expect("the subscription ends at the cutover");
    assert!(ended.is_none(), "{ended:?}");
    drop(source);
    assert_eq!(missing(&mut con, SOME_KEYS, 0).await, Vec::<String>::new());
    let v: Option<usize> = con.get("while-stopped").await.expect("GET");
    assert_eq!(v, Some(7));
}

#[tokio::test]
async fn a_migration_goes_on_after_the_emulator_restarts() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let source = SourceRedis::start(PROMPT).await;
    source.seed(SOME_KEYS).await.expect("seed");
    let cache_port = port(create(&client, "again").await.endpoint());
    prepare(&client, "again", source.port).await;
    client.start_migration().serverless_cache_name("again").send().await.expect("StartMigration");
    wait_stage(&client, "again", Some("in-sync")).await;

    let server = TestServer::start_in(server.stop().await).await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    // Back on its port, the endpoint serves the source from its first command.
    let mut con = poll_until("the endpoint back", SETTLE, || async {
        connect(cache_port, Transport::Verified(&ca), None).await.map_err(|e| e.to_string())
    })
    .await;
    let () = con.set("after-restart", 1).await.expect("SET after the restart");
    let v: Option<usize> = source.connection().await.get("after-restart").await.expect("GET on the source");
    assert_eq!(v, Some(1), "the endpoint serves the source after the restart");
    wait_stage(&client, "again", Some("in-sync")).await;
    client.complete_migration().serverless_cache_name("again").send().await.expect("CompleteMigration");
    wait_stage(&client, "again", None).await;
    drop(source);
    assert_eq!(missing(&mut con, SOME_KEYS, 0).await, Vec::<String>::new());
    let v: Option<usize> = con.get("after-restart").await.expect("GET");
    assert_eq!(v, Some(1));
}

#[tokio::test]
async fn migration_requests_get_aws_answers_and_change_nothing() {
    install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let ca = ca_pem(&server).await.expect("CA");
    let source = SourceRedis::start(&[]).await;
    let prepare = |name: &str, endpoints: Vec<CustomerNodeEndpoint>| {
        client.prepare_migration().serverless_cache_name(name).set_customer_node_endpoint_list(Some(endpoints)).send()
    };

    expect_code(prepare("nobody", vec![endpoint(source.port)]).await, "ServerlessCacheNotFoundFault");
    expect_code(client.stop_migration().serverless_cache_name("nobody").send().await, "ServerlessCacheNotFoundFault");
    expect_code(client.start_migration().serverless_cache_name("nobody").send().await, "ServerlessCacheNotFoundFault");
    expect_code(
        client.complete_migration().serverless_cache_name("nobody").send().await,
        "ServerlessCacheNotFoundFault",
    );
    expect_code(
        client.start_migration().serverless_cache_name("x").replication_group_id("y").send().await,
        "InvalidParameterCombination",
    );

    // Valkey only.
    client.create_serverless_cache().serverless_cache_name("oss").engine("redis").send().await.expect("Create");
    expect_code(prepare("oss", vec![endpoint(source.port)]).await, "InvalidParameterValue");

    let cache = create(&client, "errs").await;
    for name in ["errs"] {
        expect_code(
            client.stop_migration().serverless_cache_name(name).send().await,
            "ServerlessCacheNotUnderMigrationFault",
        );
        expect_code(
            client.start_migration().serverless_cache_name(name).send().await,
            "ServerlessCacheNotUnderMigrationFault",
        );
        expect_code(
            client.complete_migration().serverless_cache_name(name).send().await,
            "ServerlessCacheNotUnderMigrationFault",
        );
    }
    // One endpoint, a valid one.
    expect_code(prepare("errs", vec![]).await, "InvalidParameterValue");
    expect_code(prepare("errs", vec![endpoint(source.port), endpoint(source.port)]).await, "InvalidParameterValue");
    expect_code(prepare("errs", vec![endpoint(0)]).await, "InvalidParameterValue");
    let bad_address = CustomerNodeEndpoint::builder().address("no such host!").port(6379).build();
    expect_code(prepare("errs", vec![bad_address]).await, "InvalidParameterValue");
    let bad_secret = SourceAuthenticationConfiguration::builder()
        .secret_manager_config(SecretManagerAuthConfig::builder().secret_arn("arn:aws:s3:::bucket").build())
        .build();
    expect_code(
        client
            .prepare_migration()
            .serverless_cache_name("errs")
            .customer_node_endpoint_list(endpoint(source.port))
            .source_authentication_configuration(bad_secret)
            .send()
            .await,
        "InvalidParameterValue",
    );
    expect_code(
        client
            .prepare_migration()
            .serverless_cache_name("errs")
            .customer_node_endpoint_list(endpoint(source.port))
            .source_tls_configuration(SourceTlsConfiguration::builder().source_tls_mode(TlsMode::VerifyCa).build())
            .send()
            .await,
        "InvalidParameterValue",
    );
    let c = describe(&client, "errs").await;
    assert!(c.migration().is_none() && c.status() == Some("available"), "refusals changed nothing: {c:?}");

    // A source nobody listens on: the preparation fails, the cache is available again.
    let closed = nodes::ports::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port");
    prepare("errs", vec![endpoint(closed)]).await.expect("PrepareMigration");
    let event = wait_event_starting(&client, "errs", "Migration preparation failed for serverless cache errs").await;
    assert!(event.contains("cannot connect"), "{event}");
    wait_stage(&client, "errs", None).await;

    // A source newer than the cache: Valkey 8.0 into a Valkey 7 cache.
    let newer = SourceRedis::start_valkey(&[]).await;
    client
        .create_serverless_cache()
        .serverless_cache_name("seven")
        .engine("valkey")
        .major_engine_version("7")
        .send()
        .await
        .expect("Create");
    wait_available(&client, "seven").await;
    prepare("seven", vec![endpoint(newer.port)]).await.expect("PrepareMigration");
    let event = wait_event_starting(&client, "seven", "Migration preparation failed for serverless cache seven").await;
    assert!(event.contains("a higher version than the serverless cache's 7.2"), "{event}");
    wait_stage(&client, "seven", None).await;

    // A target that holds data is refused at preparation.
    let mut con = connect(port(cache.endpoint()), Transport::Verified(&ca), None).await.expect("TLS");
    let () = con.set("mine", 1).await.expect("SET");
    prepare("errs", vec![endpoint(source.port)]).await.expect("PrepareMigration");
    poll_until("the non-empty target named", SETTLE, || async {
        let events = e2e::resources::events_of(&client, SourceType::ServerlessCache, "errs").await;
        events.iter().find(|e| e.contains("not empty")).cloned().ok_or(format!("{events:?}"))
    })
    .await;
    wait_stage(&client, "errs", None).await;
    let () = con.del("mine").await.expect("DEL");

    // Under migration: no second one, no modification.
    prepare("errs", vec![endpoint(source.port)]).await.expect("PrepareMigration");
    wait_stage(&client, "errs", Some("prepared")).await;
    expect_code(prepare("errs", vec![endpoint(source.port)]).await, "ServerlessCacheAlreadyUnderMigrationFault");
    expect_code(
        client.modify_serverless_cache().serverless_cache_name("errs").description("d").send().await,
        "InvalidServerlessCacheStateFault",
    );
    // Force cuts over at once, whatever the cache holds (here: nothing).
    client
        .complete_migration()
        .serverless_cache_name("errs")
        .force(true)
        .send()
        .await
        .expect("CompleteMigration Force");
    wait_stage(&client, "errs", None).await;
    let size: usize = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert_eq!(size, 0, "the endpoint serves the cache again");

    // A cache can be deleted in the middle of a data sync; the source is left alone.
    source.seed(100).await.expect("seed");
    prepare("errs", vec![endpoint(source.port)]).await.expect("PrepareMigration");
    wait_stage(&client, "errs", Some("prepared")).await;
    client.start_migration().serverless_cache_name("errs").send().await.expect("StartMigration");
    let out = client.delete_serverless_cache().serverless_cache_name("errs").send().await.expect("Delete");
    assert_eq!(out.serverless_cache().and_then(|c| c.status()), Some("deleting"));
    poll_until("errs gone", SETTLE, || async {
        match client.describe_serverless_caches().serverless_cache_name("errs").send().await {
            Err(e) if format!("{e:?}").contains("ServerlessCacheNotFoundFault") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let size: usize = redis::cmd("DBSIZE").query_async(&mut source.connection().await).await.expect("DBSIZE");
    assert_eq!(size, 100, "the source keeps its data");
}
