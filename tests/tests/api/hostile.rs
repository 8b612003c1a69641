//! Hostile text: every byte 0x00–0xFF and a sample of Unicode (noncharacters, a lone
//! surrogate, an overlong encoding, all percent-encoded) sent in every string parameter of
//! every operation of the model. Every answer must be well-formed XML 1.0 (checked by a
//! strict parser), no 5xx but the documented 501s, text XML cannot carry refused, and
//! nothing poisoned: every Describe still parses afterwards.

use e2e::TestServer;
use futures::StreamExt as _;

const MODEL: &str = include_str!("../../../api-specs/elasticache/2015-02-02/service-2.json");

/// (operation, string parameters of its input), from the model.
fn string_parameters() -> Vec<(String, Vec<String>)> {
    let model: serde_json::Value = serde_json::from_str(MODEL).unwrap();
    let shapes = &model["shapes"];
    let mut out = Vec::new();
    for (name, operation) in model["operations"].as_object().unwrap() {
        let Some(input) = operation["input"]["shape"].as_str() else { continue };
        let members = shapes[input]["members"].as_object().cloned().unwrap_or_default();
        let strings: Vec<String> = members
            .iter()
            .filter(|(_, m)| m["shape"].as_str().is_some_and(|s| shapes[s]["type"] == "string"))
            .map(|(member, _)| member.clone())
            .collect();
        out.push((name.clone(), strings));
    }
    out
}

fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// The values sent, percent-encoded, each with whether XML can carry what it decodes to.
fn hostile_values() -> Vec<(String, bool)> {
    let mut values = Vec::new();
    // Controls one by one: only tab, newline and carriage return are text XML can carry.
    for byte in 0x00u8..0x20 {
        values.push((percent(&[b'a', byte, b'z']), matches!(byte, b'\t' | b'\n' | b'\r')));
    }
    // Every other byte at once (0x80–0xFF alone are not UTF-8: they decode to U+FFFD).
    values.push((percent(&(0x20u8..=0xFF).collect::<Vec<_>>()), true));
    let samples: [(&[u8], bool); 7] = [
        ("\u{FFFE}".as_bytes(), false),
        ("\u{FFFF}".as_bytes(), false),
        (&[0xED, 0xA0, 0x80], true), // a lone surrogate: not UTF-8, becomes U+FFFD
        (&[0xC0, 0x80], true),       // an overlong NUL: not UTF-8 either
        ("\u{10FFFF}".as_bytes(), true),
        ("é 中 😀 \u{200B}".as_bytes(), true),
        (b"<a>&amp;\"'</a>]]>", true),
    ];
    values.extend(samples.iter().map(|(bytes, carried)| (percent(bytes), *carried)));
    values
}

#[tokio::test]
async fn every_string_parameter_of_every_operation_answers_well_formed_xml() {
    // No engines: whatever a request creates never starts a process.
    let server = TestServer::without_engines().await;
    let client = reqwest::Client::new();
    let url = server.endpoint();
    let mut requests = Vec::new();
    for (operation, parameters) in string_parameters() {
        for parameter in &parameters {
            for (value, carried) in hostile_values() {
                let body = format!("Action={operation}&Version=2015-02-02&{parameter}={value}");
                requests.push((operation.clone(), parameter.clone(), carried, body));
            }
        }
    }
    let total = requests.len();
    let answers = futures::stream::iter(requests)
        .map(|(operation, parameter, carried, body)| {
            let request =
                client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body).send();
            async move {
                let response = request.await.unwrap();
                let status = response.status().as_u16();
                (operation, parameter, carried, status, response.text().await.unwrap())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(answers.len(), total);
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (operation, parameter, carried, status, body) in &answers {
        *by_status.entry(*status).or_default() += 1;
        let what = format!("{operation} {parameter}: {status} {body}");
        assert!(status < &500 || *status == 501, "{what}");
        roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("not well-formed ({e}): {what}"));
        if !carried {
            assert!(*status >= 400, "text XML cannot carry was taken: {what}");
        }
    }
    eprintln!("{total} hostile requests, answers by status: {by_status:?}");
    // Nothing was poisoned: every Describe and List still answers well-formed XML.
    for (operation, _) in string_parameters().iter().filter(|(o, _)| o.starts_with("Describe") || o.starts_with("List"))
    {
        let (_, text) = post(&server, "/", format!("Action={operation}&Version=2015-02-02").into_bytes()).await;
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{operation} after the fuzz ({e}): {text}"));
    }
}

/// A state dir written before the decoder refused such text (or edited by hand) still
/// answers well-formed XML: the encoder replaces what XML cannot carry.
#[tokio::test]
async fn a_state_dir_already_holding_control_characters_serves_well_formed_xml() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, scope) = e2e::store_in(dir.path()).await;
        let arn = format!("arn:aws:elasticache:us-east-1:{}:securitygroup:poisoned", e2e::ACCOUNT);
        store.create_security_group(&scope, "poisoned", "bell \u{7} and \u{FFFF}", &arn, &[], None).await.unwrap();
    }
    let server = TestServer::start_in(dir).await;
    let form = "Action=DescribeCacheSecurityGroups&Version=2015-02-02&CacheSecurityGroupName=poisoned";
    let (_, text) = post(&server, "/", form.as_bytes().to_vec()).await;
    let document = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let description = document.descendants().find(|n| n.has_tag_name("Description")).and_then(|n| n.text());
    assert_eq!(description, Some("bell \u{FFFD} and \u{FFFD}"));
}

async fn post(server: &TestServer, path_and_query: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path_and_query}", server.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let document = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    document.descendants().find(|n| n.has_tag_name("Code")).and_then(|n| n.text()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_post_whose_query_string_and_body_disagree_is_refused_and_a_huge_body_gets_an_xml_413() {
    let server = TestServer::without_engines().await;
    let form = "Action=CreateCacheParameterGroup&Version=2015-02-02&CacheParameterGroupName=kept\
                &CacheParameterGroupFamily=redis7&Description=d";
    let (status, body) = post(&server, "/", form.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    // The query string names another action: nothing is merged, nothing is deleted.
    let (status, body) = post(
        &server,
        "/?Action=DeleteCacheParameterGroup&CacheParameterGroupName=kept",
        b"Action=DescribeCacheParameterGroups&Version=2015-02-02".to_vec(),
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "InvalidParameterCombination"), "{body}");
    let (_, body) = post(
        &server,
        "/",
        b"Action=DescribeCacheParameterGroups&Version=2015-02-02&CacheParameterGroupName=kept".to_vec(),
    )
    .await;
    assert!(body.contains("<CacheParameterGroupName>kept</CacheParameterGroupName>"), "{body}");
    // Agreeing parts are fine, and so is a POST with its parameters in the query string only.
    let (status, _) = post(
        &server,
        "/?Action=DescribeCacheParameterGroups",
        b"Action=DescribeCacheParameterGroups&Version=2015-02-02".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(&server, "/?Action=DescribeCacheParameterGroups&Version=2015-02-02", Vec::new()).await;
    assert_eq!(status, 200);

    let huge = format!("Action=DescribeCacheClusters&Version=2015-02-02&Marker={}", "x".repeat(2 << 20));
    let (status, body) = post(&server, "/", huge.into_bytes()).await;
    assert_eq!((status, error_code(&body).as_str()), (413, "RequestEntityTooLarge"), "{body}");
}

#[tokio::test]
async fn every_file_in_the_state_dir_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create_cache_cluster()
        .cache_cluster_id("private")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .transit_encryption_enabled(true)
        .auth_token("a-secret-token-1234")
        .send()
        .await
        .unwrap();
    e2e::wait_cluster_available(&client, "private").await;
    let mut pending = vec![server.state_path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
                pending.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
            }
        }
    }
    assert!(files > 5, "the database, its WAL, the node's config, its certificate files…");
}
