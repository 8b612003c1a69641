//! `serve --init-dir`: the directory's executable scripts run once the API listens, in name
//! order, with the AWS environment pointing at the server; `/_emulator/health` reports their
//! progress under `init`. The scripts drive the real aws-cli (scripts/install-test-tools.sh).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use e2e::{TestServer, describe_cluster, poll_until, raw_get};
use serde_json::Value;

/// aws-cli starts in about a second; a few of them in a row, on a loaded machine.
const INIT_TIMEOUT: Duration = Duration::from_secs(120);

/// What every script does first: nothing of the developer's own AWS setup applies.
const PRELUDE: &str = "#!/bin/sh\nset -eu\nexport AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
                       AWS_EC2_METADATA_DISABLED=true AWS_PAGER='' AWS_MAX_ATTEMPTS=1\n";

fn write(dir: &Path, name: &str, body: &str, mode: u32) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Polls `/_emulator/health` until the init scripts are `done` or `failed`; returns `init`.
async fn init_finished(server: &TestServer) -> Value {
    poll_until("the init scripts to finish", INIT_TIMEOUT, || async {
        let (status, body) = raw_get(server.addr(), "/_emulator/health").await.map_err(|e| e.to_string())?;
        let health: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
        match health["init"]["state"].as_str() {
            Some("done" | "failed") => Ok(health["init"].clone()),
            _ => Err(health["init"].to_string()),
        }
    })
    .await
}

/// A script's `(state, exit_code)`.
fn outcome(init: &Value, name: &str) -> (String, Option<i64>) {
    let script = script(init, name);
    (script["state"].as_str().unwrap_or_default().to_string(), script["exit_code"].as_i64())
}

fn script<'a>(init: &'a Value, name: &str) -> &'a Value {
    init["scripts"]
        .as_array()
        .and_then(|scripts| scripts.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no script {name} in {init}"))
}

#[tokio::test]
async fn a_failing_script_is_named_the_others_run_and_the_server_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let create = format!(
        "{PRELUDE}echo \"creating through $AWS_ENDPOINT_URL_ELASTICACHE\"\n\
         aws elasticache create-cache-cluster --cache-cluster-id init-made --engine memcached \
         --cache-node-type cache.t3.micro --num-cache-nodes 1 --query CacheCluster.CacheClusterStatus --output text\n"
    );
    write(dir.path(), "10-create.sh", &create, 0o755);
    write(dir.path(), "20-fail.sh", "#!/bin/sh\necho 'giving up' >&2\nexit 3\n", 0o755);
    // Runs after the failure, in the init dir.
    write(dir.path(), "30-after.sh", "#!/bin/sh\ntouch after-ran\n", 0o755);
    write(dir.path(), "README.txt", "not a script: not executable\n", 0o644);
    write(dir.path(), "40-no-interpreter.sh", "#!/nonexistent/interpreter\n", 0o755);

    let server = TestServer::start_with(|c| c.init_dir = Some(dir.path().to_path_buf())).await;
    let init = init_finished(&server).await;
    println!("init: {init:#}");
    assert_eq!(init["state"], "failed");
    assert_eq!(init["script"], "20-fail.sh", "the first failure is named");
    let names: Vec<&str> = init["scripts"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["10-create.sh", "20-fail.sh", "30-after.sh", "40-no-interpreter.sh", "README.txt"]);
    assert_eq!(outcome(&init, "10-create.sh"), ("done".to_string(), Some(0)));
    assert_eq!(outcome(&init, "20-fail.sh"), ("failed".to_string(), Some(3)));
    assert_eq!(script(&init, "30-after.sh")["state"], "done");
    assert!(dir.path().join("after-ran").exists(), "scripts after a failure still run, in the init dir");
    let no_interpreter = script(&init, "40-no-interpreter.sh");
    assert_eq!(outcome(&init, "40-no-interpreter.sh"), ("failed".to_string(), None));
    assert!(no_interpreter["error"].as_str().is_some_and(|e| e.contains("could not start")), "{no_interpreter}");
    assert_eq!(script(&init, "README.txt")["state"], "skipped");

    let cluster = describe_cluster(&server.client(), "init-made").await;
    assert_eq!(cluster.engine(), Some("memcached"));
    let (status, _) = raw_get(server.addr(), "/_emulator/health").await.unwrap();
    assert_eq!(status, 200, "the server serves on after a failed init script");
}

#[tokio::test]
async fn in_strict_mode_scripts_sign_with_the_first_key_and_end_done() {
    let dir = tempfile::tempdir().unwrap();
    let check = format!(
        "{PRELUDE}printf '%s\\n' \"$AWS_ENDPOINT_URL\" \"$AWS_ENDPOINT_URL_ELASTICACHE\" \"$AWS_REGION\" \
         \"$AWS_DEFAULT_REGION\" \"$AWS_ACCESS_KEY_ID\" > env-seen\n\
         aws elasticache describe-cache-clusters --output text > /dev/null\n"
    );
    write(dir.path(), "check.sh", &check, 0o755);
    let keys = ["AKIDINIT:init-secret", "AKIDOTHER:other-secret"].map(|k| k.parse().unwrap());
    let server = TestServer::start_with(|c| {
        c.init_dir = Some(dir.path().to_path_buf());
        c.auth = server::auth::AuthSettings::strict(keys.to_vec());
    })
    .await;
    let init = init_finished(&server).await;
    println!("init: {init:#}");
    assert_eq!(init["state"], "done", "{init}");
    assert_eq!(init["script"], Value::Null);
    assert_eq!(outcome(&init, "check.sh"), ("done".to_string(), Some(0)));
    let seen = std::fs::read_to_string(dir.path().join("env-seen")).unwrap();
    let endpoint = server.endpoint();
    assert_eq!(seen.lines().collect::<Vec<_>>(), [endpoint.as_str(), &endpoint, "us-east-1", "us-east-1", "AKIDINIT"]);
}

#[tokio::test]
async fn without_an_init_dir_or_with_a_missing_one_the_state_is_none() {
    let missing = tempfile::tempdir().unwrap().path().join("absent");
    for init_dir in [None, Some(missing)] {
        // With a dir given, `running` until the runner finds it missing.
        let server = TestServer::start_with(|c| c.init_dir = init_dir).await;
        let init = poll_until("the init state to settle", INIT_TIMEOUT, || async {
            let (_, body) = raw_get(server.addr(), "/_emulator/health").await.map_err(|e| e.to_string())?;
            let health: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            match health["init"]["state"].as_str() {
                Some("running") => Err(health["init"].to_string()),
                _ => Ok(health["init"].clone()),
            }
        })
        .await;
        assert_eq!(init, serde_json::json!({"state": "none", "script": null, "scripts": []}));
    }
}
