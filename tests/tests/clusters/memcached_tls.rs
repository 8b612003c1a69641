//! Memcached with encryption in transit: its nodes and its configuration endpoint speak TLS
//! only, with certificates from the emulator's CA; anything but `config get cluster` sent
//! to the endpoint reaches the first node through TLS too.

use e2e::{MemcachedClient, TestServer, expect_code};

use crate::*;

#[tokio::test]
async fn memcached_with_encryption_in_transit_speaks_tls_only() {
    e2e::tls::install_crypto();
    let server = TestServer::start().await;
    let client = server.client();
    let create = |id: &str| {
        client
            .create_cache_cluster()
            .cache_cluster_id(id)
            .engine("memcached")
            .cache_node_type("cache.t3.micro")
            .transit_encryption_enabled(true)
    };
    let created = create("mc-tls").num_cache_nodes(2).send().await.unwrap().cache_cluster.unwrap();
    assert_eq!(created.transit_encryption_enabled(), Some(true));
    let c = wait_cluster_available(&client, "mc-tls").await;
    assert_eq!(c.transit_encryption_enabled(), Some(true));
    let ca = e2e::tls::ca_pem(&server).await.unwrap();
    let view = nodes(&c);
    for n in &view {
        let mut tls = MemcachedClient::connect_tls(&n.address, n.port, &ca).await.unwrap();
        tls.set("written-to", &n.id).await.unwrap();
        assert_eq!(tls.get("written-to").await.unwrap().as_deref(), Some(n.id.as_str()));
        let mut plain = MemcachedClient::connect(&n.address, n.port).await.unwrap();
        assert!(plain.version().await.is_err(), "node {} answered plaintext", n.id);
    }

    let endpoint = c.configuration_endpoint().expect("ConfigurationEndpoint");
    let (address, port) = (endpoint.address().unwrap(), u16::try_from(endpoint.port().unwrap()).unwrap());
    let mut config = MemcachedClient::connect_tls(address, port, &ca).await.unwrap();
    let reply = config.config_get_cluster().await.unwrap();
    assert_eq!(reply, config_reply(config_version(&reply), &view), "{}", String::from_utf8_lossy(&reply));
    assert_eq!(config.get("written-to").await.unwrap().as_deref(), Some("0001"), "proxied to the first node");
    let mut plain = MemcachedClient::connect(address, port).await.unwrap();
    assert!(plain.config_get_cluster().await.is_err(), "the endpoint answered plaintext");

    // AWS offers it from Memcached 1.6.12 on, and Memcached has no AUTH token.
    expect_code(create("too-old").engine_version("1.6.6").send().await, "InvalidParameterCombination");
    expect_code(create("with-token").auth_token("a".repeat(16)).send().await, "InvalidParameterCombination");
}
