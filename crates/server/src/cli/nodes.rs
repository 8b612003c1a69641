//! `elasticache-local nodes kill|stop|resume CLUSTER NODE`: one node crashes (SIGKILL),
//! freezes, or thaws, through `POST /_emulator/nodes/{cluster}/{node}/{action}`.

use axum::http::Method;

use super::{EXIT_ERROR, EndpointArg, segment, server_message};

#[derive(clap::Args, Debug)]
pub struct Args {
    action: Action,
    /// The cache cluster the node belongs to (a replication group's member, e.g. my-group-001).
    cache_cluster_id: String,
    /// The node's id within its cluster, e.g. 0001.
    cache_node_id: String,
    #[command(flatten)]
    endpoint: EndpointArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Action {
    /// SIGKILL the node's process, as a crash.
    Kill,
    /// Freeze the node (SIGSTOP): alive, but it answers nothing.
    Stop,
    /// Thaw a stopped node.
    Resume,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Stop => "stop",
            Action::Resume => "resume",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Action::Kill => "killed",
            Action::Stop => "stopped",
            Action::Resume => "resumed",
        }
    }
}

pub async fn run(args: Args) -> i32 {
    let action = args.action.name();
    let fail = |message: String| {
        eprintln!("elasticache-local nodes {action}: {message}");
        EXIT_ERROR
    };
    let endpoint = match args.endpoint.resolve() {
        Ok(endpoint) => endpoint,
        Err(message) => return fail(message),
    };
    let path =
        format!("/_emulator/nodes/{}/{}/{action}", segment(&args.cache_cluster_id), segment(&args.cache_node_id));
    match endpoint.request(Method::POST, &path).await {
        Ok((200, body)) => {
            let cluster = body["cache_cluster_id"].as_str().unwrap_or(&args.cache_cluster_id);
            println!("{} node {} of cache cluster {cluster}", args.action.done(), args.cache_node_id);
            0
        }
        Ok((status, body)) => fail(server_message(status, &body)),
        Err(message) => fail(message),
    }
}
