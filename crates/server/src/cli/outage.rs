//! `elasticache-local outage start|end ZONE`: a simulated zone outage, through
//! `POST|DELETE /_emulator/zones/{zone}/outage`.

use axum::http::Method;
use serde_json::Value;

use super::{EXIT_ERROR, EndpointArg, segment, server_message};

#[derive(clap::Args, Debug)]
pub struct Args {
    action: Action,
    /// The availability zone, e.g. us-east-1a.
    zone: String,
    #[command(flatten)]
    endpoint: EndpointArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Action {
    /// Every node in the zone becomes unreachable, new ones included, until the outage ends.
    Start,
    /// The zone's nodes come back.
    End,
}

pub async fn run(args: Args) -> i32 {
    let (method, verb) = match args.action {
        Action::Start => (Method::POST, "start"),
        Action::End => (Method::DELETE, "end"),
    };
    let fail = |message: String| {
        eprintln!("elasticache-local outage {verb}: {message}");
        EXIT_ERROR
    };
    let endpoint = match args.endpoint.resolve() {
        Ok(endpoint) => endpoint,
        Err(message) => return fail(message),
    };
    match endpoint.request(method, &format!("/_emulator/zones/{}/outage", segment(&args.zone))).await {
        Ok((200, body)) => {
            let nodes: Vec<String> = body["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|n| format!("{}/{}", text(&n["cache_cluster_id"]), text(&n["cache_node_id"])))
                .collect();
            let what = match args.action {
                Action::Start => "outage started",
                Action::End => "outage ended",
            };
            let nodes = if nodes.is_empty() { "no nodes".to_string() } else { format!("nodes {}", nodes.join(", ")) };
            println!("zone {}: {what} ({nodes})", args.zone);
            0
        }
        Ok((status, body)) => fail(server_message(status, &body)),
        Err(message) => fail(message),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}
