//! CreateUser / ModifyUser input rules, each with the exact error code AWS answers, and
//! proof that a refused call creates nothing.

use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::operation::create_user::builders::CreateUserFluentBuilder;
use aws_sdk_elasticache::types::{AuthenticationMode, InputAuthenticationType};
use e2e::{TestServer, expect_code};

use crate::{PASSWORD, all_user_ids, create_user, describe_user};

/// A CreateUser that succeeds as it is; each case changes one thing.
fn valid(client: &Client, id: &str) -> CreateUserFluentBuilder {
    client.create_user().user_id(id).user_name(id).engine("redis").access_string("on ~* +@all").passwords(PASSWORD)
}

#[tokio::test]
async fn create_user_rules() {
    let server = TestServer::start().await;
    let client = server.client();
    let cases: Vec<(&str, CreateUserFluentBuilder, &str)> = vec![
        // UserId: a letter first, letters/digits/hyphens, no "--", no trailing "-", ≤ 40.
        ("id starts with a digit", valid(&client, "x").user_id("1user"), "InvalidParameterValue"),
        ("id with --", valid(&client, "x").user_id("a--b"), "InvalidParameterValue"),
        ("id ends with -", valid(&client, "x").user_id("user-"), "InvalidParameterValue"),
        ("id with _", valid(&client, "x").user_id("my_user"), "InvalidParameterValue"),
        ("id of 41", valid(&client, "x").user_id("u".repeat(41)), "InvalidParameterValue"),
        ("name with a space", valid(&client, "x").user_name("my user"), "InvalidParameterValue"),
        // Engine.
        ("engine memcached", valid(&client, "x").engine("memcached"), "InvalidParameterValue"),
        ("engine blank", valid(&client, "x").engine(""), "InvalidParameterValue"),
        // Passwords: 1–2, each 16–128 printable ASCII without space, ", / or @.
        ("password of 15", valid(&client, "x").set_passwords(Some(vec!["a".repeat(15)])), "InvalidParameterValue"),
        ("password of 129", valid(&client, "x").set_passwords(Some(vec!["a".repeat(129)])), "InvalidParameterValue"),
        (
            "password with a space",
            valid(&client, "x").set_passwords(Some(vec!["sixteen chars pw!".into()])),
            "InvalidParameterValue",
        ),
        (
            "password with \"",
            valid(&client, "x").set_passwords(Some(vec!["quote\"0123456789ab".into()])),
            "InvalidParameterValue",
        ),
        (
            "password with /",
            valid(&client, "x").set_passwords(Some(vec!["slash/0123456789ab".into()])),
            "InvalidParameterValue",
        ),
        (
            "password with @",
            valid(&client, "x").set_passwords(Some(vec!["at@0123456789abcd".into()])),
            "InvalidParameterValue",
        ),
        (
            "three passwords",
            valid(&client, "x").set_passwords(Some(vec![PASSWORD.into(), PASSWORD.into(), PASSWORD.into()])),
            "InvalidParameterValue",
        ),
        // Passwords vs NoPasswordRequired vs AuthenticationMode.
        ("no password at all", valid(&client, "x").set_passwords(None), "InvalidParameterValue"),
        ("password and no-password", valid(&client, "x").no_password_required(true), "InvalidParameterCombination"),
        (
            "password mode without passwords",
            valid(&client, "x")
                .set_passwords(None)
                .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Password).build()),
            "InvalidParameterCombination",
        ),
        (
            "passwords twice",
            valid(&client, "x").authentication_mode(
                AuthenticationMode::builder().r#type(InputAuthenticationType::Password).passwords(PASSWORD).build(),
            ),
            "InvalidParameterCombination",
        ),
        (
            "no-password-required mode with passwords",
            valid(&client, "x")
                .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::NoPassword).build()),
            "InvalidParameterCombination",
        ),
        (
            "iam with passwords",
            valid(&client, "x")
                .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build()),
            "InvalidParameterCombination",
        ),
        (
            "password mode with NoPasswordRequired",
            valid(&client, "x").set_passwords(None).no_password_required(true).authentication_mode(
                AuthenticationMode::builder().r#type(InputAuthenticationType::Password).passwords(PASSWORD).build(),
            ),
            "InvalidParameterCombination",
        ),
        // Access strings: Redis ACL rules, but never passwords.
        ("access string blank", valid(&client, "x").access_string("  "), "InvalidParameterValue"),
        ("unknown rule", valid(&client, "x").access_string("on everything"), "InvalidParameterValue"),
        ("unknown category", valid(&client, "x").access_string("on ~* +@everything"), "InvalidParameterValue"),
        ("empty key pattern", valid(&client, "x").access_string("on ~ +@all"), "InvalidParameterValue"),
        ("bad key permission", valid(&client, "x").access_string("on %X~k* +@all"), "InvalidParameterValue"),
        ("bad command", valid(&client, "x").access_string("on ~* +get$"), "InvalidParameterValue"),
        ("empty subcommand", valid(&client, "x").access_string("on ~* +config|"), "InvalidParameterValue"),
        ("open selector", valid(&client, "x").access_string("on ~* (~k* +get"), "InvalidParameterValue"),
        (
            "password rule >",
            valid(&client, "x").access_string("on >sneaky-password-1 ~* +@all"),
            "InvalidParameterValue",
        ),
        ("password rule <", valid(&client, "x").access_string("on <sneaky-password-1"), "InvalidParameterValue"),
        (
            "password hash #",
            valid(&client, "x").access_string(format!("on #{}", "a".repeat(64))),
            "InvalidParameterValue",
        ),
        ("nopass", valid(&client, "x").access_string("on nopass ~* +@all"), "InvalidParameterValue"),
        ("resetpass", valid(&client, "x").access_string("on resetpass"), "InvalidParameterValue"),
        ("tags over the limit", valid(&client, "x").set_tags(Some(tags(51))), "TagQuotaPerResourceExceeded"),
    ];
    for (what, call, code) in cases {
        let error = expect_code(call.send().await, code);
        assert!(!error.message.contains("sneaky"), "{what}: the message repeats a password: {error:?}");
        assert!(!error.message.contains(PASSWORD), "{what}: the message repeats a password: {error:?}");
    }
    assert_eq!(all_user_ids(&client, None).await, ["default"], "no refused call created a user");

    // Everything Redis ACLs say about keys, channels and commands is accepted.
    for (i, rules) in [
        "on ~* +@all",
        "off",
        "on ~app::* -@all +@read +@hash +@bitmap +@geo -setbit -bitfield -hset",
        "on %R~read:* %W~write:* %RW~both:* &chan:* resetchannels allchannels",
        "on allkeys allcommands",
        "on resetkeys ~a* nocommands +get +client|setname -config|set",
        "on ~* +@all (~other:* +get)",
    ]
    .into_iter()
    .enumerate()
    {
        let user = valid(&client, &format!("ok-{i}")).access_string(rules).send().await;
        assert_eq!(user.expect(rules).access_string(), Some(rules), "echoed verbatim");
    }
    // Boundaries that pass: 16 and 128 characters, two passwords, a 40-character id.
    valid(&client, &"u".repeat(40)).send().await.expect("40-character id");
    valid(&client, "sixteen").set_passwords(Some(vec!["a".repeat(16), "b".repeat(128)])).send().await.expect("16/128");
}

fn tags(n: usize) -> Vec<aws_sdk_elasticache::types::Tag> {
    (0..n).map(|i| aws_sdk_elasticache::types::Tag::builder().key(format!("k{i}")).value("v").build()).collect()
}

#[tokio::test]
async fn modify_user_rules() {
    let server = TestServer::start().await;
    let client = server.client();
    let before = create_user(&client, "app", "app").await;
    let cases = vec![
        ("nothing to change", client.modify_user().user_id("app"), "InvalidParameterCombination"),
        (
            "access string twice",
            client.modify_user().user_id("app").access_string("on").append_access_string("+get"),
            "InvalidParameterCombination",
        ),
        ("bad access string", client.modify_user().user_id("app").access_string("on ~"), "InvalidParameterValue"),
        (
            "password in append",
            client.modify_user().user_id("app").append_access_string(">sneaky-password-1"),
            "InvalidParameterValue",
        ),
        ("short password", client.modify_user().user_id("app").passwords("too-short"), "InvalidParameterValue"),
        ("bad engine", client.modify_user().user_id("app").engine("memcached"), "InvalidParameterValue"),
        (
            "unknown user",
            client
                .modify_user()
                .user_id("no-such-user")
                .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build()),
            "UserNotFound",
        ),
        (
            "password and no-password",
            client.modify_user().user_id("app").passwords(PASSWORD).no_password_required(true),
            "InvalidParameterCombination",
        ),
    ];
    for (what, call, code) in cases {
        let error = expect_code(call.send().await, code);
        assert!(!error.message.contains("sneaky"), "{what}: {error:?}");
    }
    assert_eq!(describe_user(&client, "app").await, before, "refused calls change nothing");

    // IAM needs the user name to be the user id.
    create_user(&client, "svc", "service").await;
    expect_code(
        client
            .modify_user()
            .user_id("svc")
            .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build())
            .send()
            .await,
        "InvalidParameterCombination",
    );
    let iam = client
        .modify_user()
        .user_id("app")
        .authentication_mode(AuthenticationMode::builder().r#type(InputAuthenticationType::Iam).build())
        .send()
        .await
        .expect("IAM for a user named like its id");
    assert_eq!(iam.authentication().and_then(|a| a.password_count()), None);
}
