//! No response ever carries a password (nor its hash): every user call, successful or not,
//! read as raw bytes off the wire.

use e2e::TestServer;
use sha2::{Digest, Sha256};

const VERSION: &str = "2015-02-02";
const SECRET: &str = "Top-Secret-Pass-0001";
const SECRET_2: &str = "Top-Secret-Pass-0002";

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

async fn call(server: &TestServer, action: &str, params: &[(&str, &str)]) -> (u16, String) {
    let mut body = format!("Action={action}&Version={VERSION}");
    for (k, v) in params {
        body.push_str(&format!("&{}={}", encode(k), encode(v)));
    }
    let response = reqwest::Client::new()
        .post(server.endpoint() + "/")
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn no_response_contains_a_password() {
    let server = TestServer::start().await;
    let forbidden = [SECRET.to_string(), SECRET_2.to_string(), sha256_hex(SECRET), sha256_hex(SECRET_2)];
    let mut replies = Vec::new();
    let user = [
        ("UserId", "secretive"),
        ("UserName", "default"),
        ("Engine", "redis"),
        ("AccessString", "on ~* +@all"),
        ("Passwords.member.1", SECRET),
    ];
    replies.push(("CreateUser", call(&server, "CreateUser", &user).await));
    // Refused calls that carry the password: duplicate id, too many passwords, bad combination.
    replies.push(("CreateUser again", call(&server, "CreateUser", &user).await));
    let mut three = user.to_vec();
    three[0] = ("UserId", "other");
    three.extend([("Passwords.member.2", SECRET_2), ("Passwords.member.3", SECRET)]);
    replies.push(("CreateUser 3 passwords", call(&server, "CreateUser", &three).await));
    let mut both = user.to_vec();
    both[0] = ("UserId", "other");
    both.push(("NoPasswordRequired", "true"));
    replies.push(("CreateUser + NoPasswordRequired", call(&server, "CreateUser", &both).await));
    let mut in_access = user.to_vec();
    in_access[0] = ("UserId", "other");
    let rules = format!("on >{SECRET} ~* +@all");
    in_access[3] = ("AccessString", &rules);
    replies.push(("CreateUser password in access string", call(&server, "CreateUser", &in_access).await));
    let mut space = user.to_vec();
    space[0] = ("UserId", "other");
    let spaced = format!("{SECRET} x");
    space[4] = ("Passwords.member.1", &spaced);
    replies.push(("CreateUser password with space", call(&server, "CreateUser", &space).await));

    replies.push((
        "ModifyUser",
        call(
            &server,
            "ModifyUser",
            &[("UserId", "secretive"), ("Passwords.member.1", SECRET), ("Passwords.member.2", SECRET_2)],
        )
        .await,
    ));
    replies.push((
        "ModifyUser by AuthenticationMode",
        call(
            &server,
            "ModifyUser",
            &[
                ("UserId", "secretive"),
                ("AuthenticationMode.Type", "password"),
                ("AuthenticationMode.Passwords.member.1", SECRET_2),
            ],
        )
        .await,
    ));
    replies.push(("DescribeUsers", call(&server, "DescribeUsers", &[]).await));
    replies.push((
        "CreateUserGroup",
        call(
            &server,
            "CreateUserGroup",
            &[("UserGroupId", "g"), ("Engine", "redis"), ("UserIds.member.1", "secretive")],
        )
        .await,
    ));
    replies.push(("DescribeUserGroups", call(&server, "DescribeUserGroups", &[]).await));
    replies.push(("DescribeEvents", call(&server, "DescribeEvents", &[]).await));
    replies.push(("DeleteUserGroup", call(&server, "DeleteUserGroup", &[("UserGroupId", "g")]).await));
    replies.push(("DeleteUser", call(&server, "DeleteUser", &[("UserId", "secretive")]).await));

    let statuses: Vec<(&str, u16)> = replies.iter().map(|(what, (status, _))| (*what, *status)).collect();
    assert_eq!(
        statuses,
        [
            ("CreateUser", 200),
            ("CreateUser again", 400),
            ("CreateUser 3 passwords", 400),
            ("CreateUser + NoPasswordRequired", 400),
            ("CreateUser password in access string", 400),
            ("CreateUser password with space", 400),
            ("ModifyUser", 200),
            ("ModifyUser by AuthenticationMode", 200),
            ("DescribeUsers", 200),
            ("CreateUserGroup", 200),
            ("DescribeUserGroups", 200),
            ("DescribeEvents", 200),
            ("DeleteUserGroup", 200),
            ("DeleteUser", 200),
        ],
        "the calls did what this test expects"
    );
    for (what, (_, body)) in &replies {
        for secret in &forbidden {
            assert!(!body.contains(secret.as_str()), "{what} answered with a password or its hash: {body}");
        }
    }
    // The user was really there, with its two passwords: the scan above saw real answers.
    let modify = &replies[6].1.1;
    assert!(modify.contains("<PasswordCount>2</PasswordCount>"), "{modify}");
    assert!(replies[8].1.1.contains("<UserId>secretive</UserId>"));
}

fn sha256_hex(input: &str) -> String {
    Sha256::digest(input.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
