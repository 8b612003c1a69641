//! Random requests for every operation of the model, through the real HTTP server: each
//! input member present or not, with values of the right type and of wrong ones (arbitrary
//! Unicode, raw bytes, numbers past any integer, long text), lists with gaps and odd indices,
//! and stray keys. No answer may be a 5xx other than a documented 501, and every answer must
//! be well-formed XML that botocore's own parser accepts (`tests/tools/parse_with_botocore.py`).
//!
//! The generator is seeded, so a failure names a request that fails again the next run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::LazyLock;

use e2e::TestServer;
use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;

const CASES_PER_OPERATION: usize = 60;
/// Structures in lists in structures: deeper than any input of the model goes.
const MAX_DEPTH: usize = 4;

static MODEL: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../api-specs/elasticache/2015-02-02/service-2.json")).unwrap()
});

/// (key, percent-encoded value) pairs of a form body.
type Pairs = Vec<(String, String)>;

fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A value for a scalar of `kind`: mostly of that kind, often not.
fn scalar(kind: &str) -> BoxedStrategy<String> {
    let right: BoxedStrategy<String> = match kind {
        "integer" => prop_oneof![0i32..1000, any::<i32>()].prop_map(|n| n.to_string()).boxed(),
        "double" => any::<f64>().prop_map(|n| n.to_string()).boxed(),
        "boolean" => prop_oneof![Just("true"), Just("false")].prop_map(str::to_string).boxed(),
        "timestamp" => prop_oneof![Just("2026-12-01T10:00:00Z"), Just("2026-12-01T10:00:00.123Z"), Just("1796125689")]
            .prop_map(str::to_string)
            .boxed(),
        _ => "[a-z][a-z0-9-]{0,30}".boxed(),
    };
    let wrong = prop_oneof![
        any::<String>(),
        "[0-9]{11,30}",
        "-[0-9]{1,12}",
        Just(String::new()),
        "x{256,4096}",
        prop_oneof![Just("NaN"), Just("1e309"), Just("TRUE"), Just("0x10"), Just(" 1"), Just("null")]
            .prop_map(str::to_string),
    ];
    let raw_bytes = prop::collection::vec(any::<u8>(), 0..48).prop_map(|bytes| percent(&bytes));
    prop_oneof![
        4 => right.prop_map(|text| percent(text.as_bytes())),
        2 => wrong.prop_map(|text| percent(text.as_bytes())),
        1 => raw_bytes,
    ]
    .boxed()
}

/// A list's indices: usually 1..=n, sometimes with gaps, zeros, negatives or no number.
fn indices() -> BoxedStrategy<Vec<String>> {
    let in_order = (0usize..4).prop_map(|n| (1..=n).map(|i| i.to_string()).collect());
    let odd = prop::collection::vec(
        prop_oneof![Just("0"), Just("2"), Just("3"), Just("-1"), Just("99999999999"), Just("x"), Just("")]
            .prop_map(str::to_string),
        1..4,
    );
    prop_oneof![4 => in_order, 1 => odd].boxed()
}

fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// The pairs that serialize a value of `shape` under `prefix` (the Query protocol's
/// `Member.Sub`, `List.member.N` or `List.<locationName>.N`).
fn pairs_of(shape: &str, prefix: String, depth: usize) -> BoxedStrategy<Pairs> {
    let definition = &MODEL["shapes"][shape];
    match definition["type"].as_str().unwrap_or("string") {
        _ if depth > MAX_DEPTH => Just(Pairs::new()).boxed(),
        "structure" => {
            let required: Vec<&str> =
                definition["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
            let members: Vec<BoxedStrategy<Option<Pairs>>> = definition["members"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, member)| {
                    let present = if required.contains(&name.as_str()) { 0.9 } else { 0.4 };
                    let shape = member["shape"].as_str().unwrap_or("String");
                    prop::option::weighted(present, pairs_of(shape, key(&prefix, name), depth + 1)).boxed()
                })
                .collect();
            members.prop_map(|members| members.into_iter().flatten().flatten().collect()).boxed()
        }
        "list" => {
            let element = definition["member"]["shape"].as_str().unwrap_or("String").to_string();
            let location = definition["member"]["locationName"].as_str().unwrap_or("member").to_string();
            indices()
                .prop_flat_map(move |indices| {
                    indices
                        .into_iter()
                        .map(|i| pairs_of(&element, key(&prefix, &format!("{location}.{i}")), depth + 1))
                        .collect::<Vec<_>>()
                })
                .prop_map(|elements| elements.into_iter().flatten().collect())
                .boxed()
        }
        kind => scalar(kind).prop_map(move |value| vec![(prefix.clone(), value)]).boxed(),
    }
}

/// A whole form body for `operation`, stray keys included now and then.
fn form(operation: &str) -> BoxedStrategy<String> {
    let input = MODEL["operations"][operation]["input"]["shape"].as_str();
    let members = input.map_or_else(|| Just(Pairs::new()).boxed(), |shape| pairs_of(shape, String::new(), 0));
    let stray = prop::collection::vec(("[A-Za-z][A-Za-z0-9.]{0,30}", scalar("string")), 0..2);
    let operation = operation.to_string();
    (members, stray)
        .prop_map(move |(members, stray)| {
            let mut body = format!("Action={operation}&Version=2015-02-02");
            for (key, value) in members.iter().chain(&stray) {
                body.push_str(&format!("&{}={value}", percent(key.as_bytes())));
            }
            body
        })
        .boxed()
}

fn operations() -> Vec<String> {
    MODEL["operations"].as_object().unwrap().keys().cloned().collect()
}

struct Answer {
    operation: String,
    request: String,
    status: u16,
    body: String,
}

async fn send_all(server: &TestServer, requests: Vec<(String, String)>) -> Vec<Answer> {
    let client = reqwest::Client::new();
    let url = server.endpoint();
    futures::stream::iter(requests)
        .map(|(operation, request)| {
            let sent = client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(request.clone())
                .send();
            async move {
                let response = sent.await.unwrap_or_else(|e| panic!("{request}: {e}"));
                let status = response.status().as_u16();
                Answer { operation, request, status, body: response.text().await.unwrap() }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Every answer through botocore's QueryParser; panics on the first it refuses.
fn parse_with_botocore(answers: &[Answer]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/parse_with_botocore.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with botocore (make test installs it)");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        for answer in answers {
            let line = serde_json::json!({"operation": answer.operation, "status": answer.status, "body": answer.body});
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "botocore refused answers: {report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    eprintln!(
        "botocore parsed {} answers ({} of operations it does not know)",
        report["parsed"], report["unknown_operations"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_for_every_operation_get_well_formed_answers_botocore_parses() {
    // No engines: whatever a request creates never starts a process.
    let server = TestServer::without_engines().await;
    let mut runner = TestRunner::deterministic();
    let mut requests = Vec::new();
    for operation in operations() {
        let strategy = form(&operation);
        for _ in 0..CASES_PER_OPERATION {
            requests.push((operation.clone(), strategy.new_tree(&mut runner).unwrap().current()));
        }
    }
    let mut answers = send_all(&server, requests).await;
    // Whatever the fuzz created must still describe well.
    let listings = operations().into_iter().filter(|o| o.starts_with("Describe") || o.starts_with("List"));
    answers.extend(
        send_all(&server, listings.map(|o| (o.clone(), format!("Action={o}&Version=2015-02-02"))).collect()).await,
    );

    let mut by_status = BTreeMap::<u16, usize>::new();
    for Answer { operation, request, status, body } in &answers {
        *by_status.entry(*status).or_default() += 1;
        let what = format!("{operation}: {status} for {request}\n{body}");
        assert!(*status < 500 || *status == 501, "{what}");
        roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("not well-formed ({e}): {what}"));
    }
    eprintln!("{} fuzzed requests, answers by status: {by_status:?}", answers.len());
    assert!(by_status.get(&200).is_some_and(|&ok| ok > 100), "the fuzz reaches past validation: {by_status:?}");
    parse_with_botocore(&answers);
}
