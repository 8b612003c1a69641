//! The AWS Query wire format, checked with raw HTTP: envelopes, request ids, protocol errors,
//! and that no input, however malformed, makes the server fail (5xx) or panic.

use std::collections::BTreeMap;

use e2e::TestServer;
use quick_xml::events::Event;

const XMLNS: &str = "http://elasticache.amazonaws.com/doc/2015-02-02/";
const VERSION: &str = "2015-02-02";

/// Just enough DOM to check envelopes.
#[derive(Debug, Default, Clone)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn path(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.child(name))
    }

    fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.path(path).map(|e| e.text.as_str())
    }
}

fn parse_xml(body: &str) -> Result<Element, String> {
    let mut reader = quick_xml::Reader::from_str(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let open = |e: &quick_xml::events::BytesStart| -> Result<Element, String> {
        let mut element =
            Element { name: String::from_utf8_lossy(e.name().as_ref()).into_owned(), ..Default::default() };
        for attr in e.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            element.attrs.insert(
                String::from_utf8_lossy(attr.key.as_ref()).into_owned(),
                String::from_utf8_lossy(&attr.value).into_owned(),
            );
        }
        Ok(element)
    };
    loop {
        let event = reader.read_event().map_err(|e| format!("{e} at {}", reader.buffer_position()))?;
        let mut close = |element: Element, stack: &mut Vec<Element>| -> Result<(), String> {
            match stack.last_mut() {
                Some(parent) => parent.children.push(element),
                None if root.is_none() => root = Some(element),
                None => return Err("two root elements".into()),
            }
            Ok(())
        };
        match event {
            Event::Start(e) => stack.push(open(&e)?),
            Event::Empty(e) => close(open(&e)?, &mut stack)?,
            Event::End(_) => {
                let element = stack.pop().ok_or("unbalanced end tag")?;
                close(element, &mut stack)?;
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(format!("text outside the root: {text:?}")),
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => match r.decode().map_err(|e| e.to_string())?.as_ref() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                stack.last_mut().ok_or("entity outside the root")?.text.push_str(&resolved);
            }
            Event::CData(c) => {
                stack.last_mut().ok_or("CDATA outside the root")?.text.push_str(&String::from_utf8_lossy(&c))
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed elements".into());
    }
    root.ok_or_else(|| "no root element".into())
}

struct Reply {
    status: u16,
    request_id_header: Option<String>,
    body: String,
}

impl Reply {
    fn xml(&self) -> Element {
        parse_xml(&self.body).unwrap_or_else(|e| panic!("malformed XML ({e}): {}", self.body))
    }

    /// Checks the error envelope and returns (code, message).
    fn error(&self) -> (String, String) {
        let root = self.xml();
        assert_eq!(root.name, "ErrorResponse", "{}", self.body);
        let error = root.child("Error").unwrap_or_else(|| panic!("<Error> in {}", self.body));
        let kind = error.text_at(&["Type"]).unwrap_or_else(|| panic!("<Type> in {}", self.body));
        assert!(kind == "Sender" || kind == "Receiver", "{}", self.body);
        if self.status < 500 {
            assert_eq!(kind, "Sender", "client errors are the Sender's: {}", self.body);
        }
        let code = error.text_at(&["Code"]).unwrap_or_else(|| panic!("<Code> in {}", self.body));
        let message = error.text_at(&["Message"]).unwrap_or_else(|| panic!("<Message> in {}", self.body));
        assert!(!code.is_empty() && !message.is_empty(), "{}", self.body);
        let request_id =
            root.text_at(&["RequestId"]).unwrap_or_else(|| panic!("<RequestId> beside <Error> in {}", self.body));
        assert!(!request_id.is_empty());
        assert_eq!(self.request_id_header.as_deref(), Some(request_id), "x-amzn-RequestId header matches the body");
        (code.to_string(), message.to_string())
    }

    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let (actual, message) = self.error();
        assert_eq!(actual, code, "{}", self.body);
        message
    }

    /// Checks the success envelope of `action` and returns the `<XResult>` element.
    fn result(&self, action: &str) -> Element {
        assert_eq!(self.status, 200, "{}", self.body);
        let root = self.xml();
        assert_eq!(root.name, format!("{action}Response"), "{}", self.body);
        assert_eq!(root.attrs.get("xmlns").map(String::as_str), Some(XMLNS), "{}", self.body);
        let request_id =
            root.text_at(&["ResponseMetadata", "RequestId"]).unwrap_or_else(|| panic!("RequestId in {}", self.body));
        assert!(!request_id.is_empty());
        assert_eq!(self.request_id_header.as_deref(), Some(request_id), "x-amzn-RequestId header matches the body");
        let first = root.children.first().unwrap_or_else(|| panic!("empty response {}", self.body));
        assert_eq!(
            first.name,
            format!("{action}Result"),
            "the Result comes first (aws-sdk-rust reads the first child)"
        );
        first.clone()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let request_id_header =
        response.headers().get("x-amzn-requestid").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = response.text().await.expect("response body");
    Reply { status, request_id_header, body }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn post(server: &TestServer, body: impl Into<reqwest::Body>) -> Reply {
    send(
        reqwest::Client::new()
            .post(server.endpoint() + "/")
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .body(body),
    )
    .await
}

async fn post_form(server: &TestServer, pairs: &[(&str, &str)]) -> Reply {
    post(server, form(pairs)).await
}

#[tokio::test]
async fn success_envelope() {
    let server = TestServer::start().await;
    let reply = post_form(&server, &[("Action", "DescribeCacheParameterGroups"), ("Version", VERSION)]).await;
    let result = reply.result("DescribeCacheParameterGroups");
    let groups = result.child("CacheParameterGroups").expect("CacheParameterGroups");
    assert!(
        groups.children.iter().all(|g| g.name == "CacheParameterGroup"),
        "list members are named CacheParameterGroup"
    );
    assert!(groups.children.iter().any(|g| g.text_at(&["CacheParameterGroupName"]) == Some("default.redis7")));
    assert!(reply.body.contains("<IsGlobal>false</IsGlobal>"), "booleans are lowercase");

    // Request ids differ per request.
    let again = post_form(&server, &[("Action", "DescribeCacheParameterGroups"), ("Version", VERSION)]).await;
    assert_ne!(reply.request_id_header, again.request_id_header);

    // An operation without output still has the envelope.
    let created = post_form(
        &server,
        &[
            ("Action", "CreateCacheParameterGroup"),
            ("Version", VERSION),
            ("CacheParameterGroupName", "wire"),
            ("CacheParameterGroupFamily", "redis7"),
            ("Description", "a <b> & \"c\""),
        ],
    )
    .await;
    let result = created.result("CreateCacheParameterGroup");
    assert_eq!(
        result.text_at(&["CacheParameterGroup", "Description"]),
        Some("a <b> & \"c\""),
        "text is escaped and round-trips"
    );
    let deleted = post_form(
        &server,
        &[("Action", "DeleteCacheParameterGroup"), ("Version", VERSION), ("CacheParameterGroupName", "wire")],
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let root = deleted.xml();
    assert_eq!(root.name, "DeleteCacheParameterGroupResponse");
    assert!(root.text_at(&["ResponseMetadata", "RequestId"]).is_some_and(|r| !r.is_empty()), "{}", deleted.body);
}

#[tokio::test]
async fn get_with_query_string_works() {
    let server = TestServer::start().await;
    let reply = send(reqwest::Client::new().get(format!(
        "{}/?Action=DescribeCacheParameterGroups&Version={VERSION}&CacheParameterGroupName=default.valkey8",
        server.endpoint()
    )))
    .await;
    let result = reply.result("DescribeCacheParameterGroups");
    let groups = result.child("CacheParameterGroups").unwrap();
    assert_eq!(groups.children.len(), 1);
    assert_eq!(groups.children[0].text_at(&["CacheParameterGroupFamily"]), Some("valkey8"));
}

#[tokio::test]
async fn protocol_errors() {
    let server = TestServer::start().await;
    post_form(&server, &[("Version", VERSION)]).await.expect_error(400, "MissingAction");
    post(&server, "").await.expect_error(400, "MissingAction");
    let message = post_form(&server, &[("Action", "DescribeEverything"), ("Version", VERSION)])
        .await
        .expect_error(400, "InvalidAction");
    assert!(message.contains("DescribeEverything"), "the message names the action: {message}");
    let message = post_form(
        &server,
        &[
            ("Action", "CreateCacheParameterGroup"),
            ("Version", VERSION),
            ("CacheParameterGroupName", "x"),
            ("Description", "d"),
        ],
    )
    .await
    .expect_error(400, "MissingParameter");
    assert!(message.contains("CacheParameterGroupFamily"), "the message names the missing member: {message}");
    post_form(&server, &[("Action", "DescribeCacheParameterGroups"), ("Version", VERSION), ("MaxRecords", "abc")])
        .await
        .expect_error(400, "InvalidParameterValue");
    post_form(&server, &[("Action", "DescribeCacheEngineVersions"), ("Version", VERSION), ("DefaultOnly", "maybe")])
        .await
        .expect_error(400, "InvalidParameterValue");
    let reply = post_form(&server, &[("Action", "DescribeCacheParameterGroups"), ("Version", "2010-01-01")]).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    reply.error();
    // Modeled errors carry the model's status.
    post_form(
        &server,
        &[("Action", "DescribeCacheParameterGroups"), ("Version", VERSION), ("CacheParameterGroupName", "nope")],
    )
    .await
    .expect_error(404, "CacheParameterGroupNotFound");
    post_form(
        &server,
        &[("Action", "DescribeCacheSubnetGroups"), ("Version", VERSION), ("CacheSubnetGroupName", "nope")],
    )
    .await
    .expect_error(400, "CacheSubnetGroupNotFoundFault");
}

#[tokio::test]
async fn unimplemented_operation_answers_a_well_formed_error() {
    let server = TestServer::start().await;
    let reply = post_form(
        &server,
        &[
            ("Action", "CreateServerlessCache"),
            ("Version", VERSION),
            ("ServerlessCacheName", "probe"),
            ("Engine", "redis"),
        ],
    )
    .await;
    if reply.status != 200 {
        let (code, message) = reply.error();
        assert!(
            reply.status < 500 || (reply.status == 501 && code == "NotImplemented"),
            "{} {}",
            reply.status,
            reply.body
        );
        if code == "NotImplemented" {
            assert!(message.contains("CreateServerlessCache"), "the message names the operation: {message}");
        }
    } else {
        reply.result("CreateServerlessCache");
    }
    post(&server, "").await; // still serving
    let health = send(reqwest::Client::new().get(server.endpoint() + "/_emulator/health")).await;
    assert_eq!(health.status, 200);
}

// ---- every operation of the model, and garbage ----

fn model() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../api-specs/elasticache/2015-02-02/service-2.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("API model")).expect("API model JSON")
}

/// Query parameters for the required members of `shape`, with plausible values.
fn fill(model: &serde_json::Value, shape: &str, prefix: &str, out: &mut Vec<(String, String)>, depth: usize) {
    let definition = &model["shapes"][shape];
    if depth > 6 {
        return;
    }
    match definition["type"].as_str().unwrap_or("string") {
        "structure" => {
            let required: Vec<&str> =
                definition["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
            for (name, member) in definition["members"].as_object().into_iter().flatten() {
                // A structure without required members (Tag, ParameterNameValue) inside a list
                // gets all of its members, so that the list item means something.
                if !required.contains(&name.as_str()) && (prefix.is_empty() || !required.is_empty()) {
                    continue;
                }
                let wire = member["locationName"].as_str().unwrap_or(name);
                let key = if prefix.is_empty() { wire.to_string() } else { format!("{prefix}.{wire}") };
                fill(model, member["shape"].as_str().unwrap(), &key, out, depth + 1);
            }
        }
        "list" => {
            let member = &definition["member"];
            let wire = member["locationName"].as_str().unwrap_or("member");
            fill(model, member["shape"].as_str().unwrap(), &format!("{prefix}.{wire}.1"), out, depth + 1);
        }
        "integer" | "long" => out.push((prefix.to_string(), "20".into())),
        "double" | "float" => out.push((prefix.to_string(), "1.5".into())),
        "boolean" => out.push((prefix.to_string(), "false".into())),
        "timestamp" => out.push((prefix.to_string(), "2024-01-01T00:00:00Z".into())),
        _ => {
            let value = definition["enum"].get(0).and_then(|v| v.as_str()).unwrap_or("e2e-probe");
            out.push((prefix.to_string(), value.to_string()));
        }
    }
}

fn check_never_fails(reply: &Reply, what: &str) {
    if reply.status == 200 {
        parse_xml(&reply.body).unwrap_or_else(|e| panic!("{what}: malformed XML ({e}): {}", reply.body));
        return;
    }
    assert!(reply.status < 500 || reply.status == 501, "{what}: server error {}: {}", reply.status, reply.body);
    let (code, message) = reply.error();
    if reply.status == 501 {
        assert_eq!(code, "NotImplemented", "{what}: {}", reply.body);
        assert!(!message.is_empty());
    }
}

#[tokio::test]
async fn every_operation_answers_without_a_server_error() {
    let server = TestServer::start().await;
    let model = model();
    let operations = model["operations"].as_object().unwrap();
    assert!(operations.len() > 50);
    let mut not_implemented = Vec::new();
    for (name, operation) in operations {
        // No input at all: a missing required member is the client's fault.
        let bare = post_form(&server, &[("Action", name), ("Version", VERSION)]).await;
        check_never_fails(&bare, &format!("{name} without members"));
        let input = operation["input"]["shape"].as_str();
        let required = input.and_then(|i| model["shapes"][i]["required"].as_array()).is_some_and(|r| !r.is_empty());
        if required {
            let (code, message) = bare.error();
            assert_eq!(code, "MissingParameter", "{name} without its required members: {}", bare.body);
            assert!(!message.is_empty());
        }
        // With every required member: the operation's own semantics answer.
        let mut params = vec![("Action".to_string(), name.clone()), ("Version".to_string(), VERSION.to_string())];
        if let Some(input) = input {
            fill(&model, input, "", &mut params, 0);
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = post_form(&server, &pairs).await;
        check_never_fails(&reply, &format!("{name} {params:?}"));
        if reply.status == 200 {
            if operation["output"].is_object() {
                reply.result(name);
            } else {
                let root = reply.xml();
                assert_eq!(root.name, format!("{name}Response"), "{}", reply.body);
                assert!(
                    root.text_at(&["ResponseMetadata", "RequestId"]).is_some_and(|r| !r.is_empty()),
                    "{}",
                    reply.body
                );
            }
        } else {
            let (code, message) = reply.error();
            if code == "NotImplemented" {
                assert!(message.contains(name.as_str()), "NotImplemented names the operation: {message}");
                not_implemented.push(name.clone());
            }
            assert_ne!(
                code, "MissingParameter",
                "{name}: all required members were sent: {params:?} -> {}",
                reply.body
            );
        }
    }
    eprintln!(
        "{} of {} operations answer with their own semantics",
        operations.len() - not_implemented.len(),
        operations.len()
    );
    assert_eq!(not_implemented, Vec::<String>::new(), "every operation of the model has its semantics");
    cleanup(&server).await;
}

/// Deterministic pseudo-random numbers; no dependency, reproducible failures.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[tokio::test]
async fn garbage_never_causes_a_server_error() {
    let server = TestServer::start().await;
    let model = model();
    let operations: Vec<&str> = model["operations"].as_object().unwrap().keys().map(String::as_str).collect();
    let keys = [
        "Action",
        "Version",
        "MaxRecords",
        "Marker",
        "CacheParameterGroupName",
        "CacheParameterGroupFamily",
        "Description",
        "Tags.Tag.1.Key",
        "Tags.Tag.1.Value",
        "Tags.Tag.0.Key",
        "Tags.Tag.-1.Key",
        "Tags.Tag.99999999999999999999.Key",
        "Tags.Tag.1",
        "Tags.Tag",
        "Tags",
        "TagKeys.member.1",
        "ResourceName",
        "SubnetIds.SubnetIdentifier.1",
        "SubnetIds.SubnetIdentifier.2147483648",
        "ParameterNameValues.ParameterNameValue.1.ParameterName",
        "ParameterNameValues.ParameterNameValue.1.ParameterValue",
        "ParameterNameValues.ParameterNameValue.1",
        "ResetAllParameters",
        "CacheSubnetGroupName",
        "CacheSubnetGroupDescription",
        "CacheSecurityGroupName",
        "EC2SecurityGroupName",
        "EC2SecurityGroupOwnerId",
        "CacheClusterId",
        "ReplicationGroupId",
        "NumCacheNodes",
        "Filters.member.1.Values.member.1",
        "a.b.c.d.e.f.g.h",
        ".",
        "..",
        "",
        "%",
        "Action.1",
        "DefaultOnly",
        "Source",
        "StartTime",
        "Duration",
    ];
    let long = "x".repeat(70_000);
    let values = [
        "",
        "abc",
        "-1",
        "0",
        "20",
        "99999999999999999999999",
        "1e3",
        "true",
        "TRUE",
        "null",
        "redis7",
        "default.redis7",
        "arn:aws:elasticache:us-east-1:000000000000:parametergroup:default.redis7",
        "arn:",
        "%00",
        "\u{0}",
        "é",
        "😀",
        "<x>&amp;</x>",
        "]]>",
        "2024-13-45T99:99:99Z",
        "subnet-0a1b2c3d",
        long.as_str(),
    ];
    let mut rng = XorShift(0x9e3779b97f4a7c15);
    for round in 0..400 {
        let body: Vec<u8> = match round % 4 {
            // Raw bytes.
            0 => (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
            // Broken escapes and separators.
            1 => {
                let pieces = [
                    "%", "%Z", "%ZZ", "%zz", "%%", "&", "=", "==", "&&", "+", "Action", "Version", "%FF%FE", "\r\n",
                    ";",
                ];
                let mut s = format!("Action={}&", rng.pick(&operations));
                for _ in 0..rng.below(30) {
                    s.push_str(rng.pick(&pieces));
                }
                s.into_bytes()
            }
            // Real operations with random members and values.
            _ => {
                let mut pairs = vec![("Action", rng.pick(&operations)), ("Version", VERSION)];
                for _ in 0..rng.below(12) {
                    pairs.push((rng.pick(&keys), rng.pick(&values)));
                }
                form(&pairs).into_bytes()
            }
        };
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let reply = post(&server, body).await;
        check_never_fails(&reply, &format!("round {round}, body {shown:?}"));
    }
    // Queries too.
    for round in 0..50 {
        let mut query = format!("Action={}&Version={VERSION}", rng.pick(&operations));
        for _ in 0..rng.below(8) {
            query.push_str(&format!("&{}={}", encode(rng.pick(&keys)), encode(rng.pick(&values[..values.len() - 1]))));
        }
        let reply = send(reqwest::Client::new().get(format!("{}/?{query}", server.endpoint()))).await;
        check_never_fails(&reply, &format!("GET round {round}: {query}"));
    }
    // Other methods and paths.
    let client = reqwest::Client::new();
    for reply in [
        send(client.put(server.endpoint() + "/").body("Action=DescribeCacheParameterGroups")).await,
        send(client.delete(server.endpoint() + "/")).await,
        send(
            client
                .post(server.endpoint() + "/some/path")
                .body(format!("Action=DescribeCacheParameterGroups&Version={VERSION}")),
        )
        .await,
        send(client.post(server.endpoint() + "/").header("content-type", "application/json").body("{\"Action\":1}"))
            .await,
    ] {
        check_never_fails(&reply, "other method/path");
    }
    let health = send(client.get(server.endpoint() + "/_emulator/health")).await;
    assert_eq!(health.status, 200, "still serving");
    cleanup(&server).await;
}

/// Stops whatever the probes may have started.
async fn cleanup(server: &TestServer) {
    let reply = send(reqwest::Client::new().post(server.endpoint() + "/_emulator/reset")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}
