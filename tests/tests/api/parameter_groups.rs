//! Cache parameter groups, their parameters and the engine defaults.

use std::collections::HashSet;

use e2e::{ACCOUNT, REGION, TestServer, api_error, expect_code};

use crate::{all_params, all_pg_names, create_pg, pnv, value_of};

/// Every family of the versions AWS offers (crates/model/data/parameters/).
const FAMILIES: [&str; 10] = [
    "memcached1.4",
    "memcached1.5",
    "memcached1.6",
    "redis4.0",
    "redis5.0",
    "redis6.x",
    "redis7",
    "valkey7",
    "valkey8",
    "valkey9",
];

/// `default.<family>` for every family, and `default.<family>.cluster.on` for the redis-like.
fn default_groups() -> Vec<(String, &'static str)> {
    let cluster_on =
        FAMILIES.iter().filter(|f| !f.starts_with("memcached")).map(|f| (format!("default.{f}.cluster.on"), *f));
    FAMILIES.iter().map(|f| (format!("default.{f}"), *f)).chain(cluster_on).collect()
}

#[tokio::test]
async fn default_groups_are_listed_with_family_and_arn() {
    let server = TestServer::start().await;
    let client = server.client();
    let groups = client.describe_cache_parameter_groups().send().await.unwrap();
    for (name, family) in default_groups() {
        let name = name.as_str();
        let group = groups
            .cache_parameter_groups()
            .iter()
            .find(|g| g.cache_parameter_group_name() == Some(name))
            .unwrap_or_else(|| panic!("default group {name} missing from {groups:?}"));
        assert_eq!(group.cache_parameter_group_family(), Some(family), "{name}");
        assert!(group.description().is_some_and(|d| !d.is_empty()), "{name} has a description");
        assert_eq!(group.arn(), Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:parametergroup:{name}").as_str()));
    }
    // A describe by name finds exactly that group.
    let one =
        client.describe_cache_parameter_groups().cache_parameter_group_name("default.redis7").send().await.unwrap();
    assert_eq!(one.cache_parameter_groups().len(), 1);
    // Default groups carry the engine defaults.
    let params = all_params(&client, "default.redis7", None).await;
    assert_eq!(value_of(&params, "maxmemory-policy"), Some("volatile-lru"));
    let cluster_on = all_params(&client, "default.redis7.cluster.on", None).await;
    assert_eq!(value_of(&cluster_on, "cluster-enabled"), Some("yes"));
    assert_eq!(value_of(&params, "cluster-enabled"), Some("no"));
}

#[tokio::test]
async fn create_describe_delete_lifecycle() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = create_pg(&client, "my-params", "redis7").await;
    assert_eq!(created.cache_parameter_group_name(), Some("my-params"));
    assert_eq!(created.cache_parameter_group_family(), Some("redis7"));
    assert_eq!(created.description(), Some("e2e my-params"));
    assert_eq!(
        created.arn(),
        Some(format!("arn:aws:elasticache:{REGION}:{ACCOUNT}:parametergroup:my-params").as_str())
    );
    assert_eq!(created.is_global(), Some(false));

    let described =
        client.describe_cache_parameter_groups().cache_parameter_group_name("my-params").send().await.unwrap();
    assert_eq!(described.cache_parameter_groups(), std::slice::from_ref(&created));

    // A new group is a copy of its family's defaults, none of them set by the user.
    let params = all_params(&client, "my-params", None).await;
    let defaults = all_params(&client, "default.redis7", None).await;
    assert_eq!(params.len(), defaults.len());
    assert_eq!(value_of(&params, "maxmemory-policy"), Some("volatile-lru"));
    assert!(all_params(&client, "my-params", Some("user")).await.is_empty());

    client.delete_cache_parameter_group().cache_parameter_group_name("my-params").send().await.unwrap();
    expect_code(
        client.describe_cache_parameter_groups().cache_parameter_group_name("my-params").send().await,
        "CacheParameterGroupNotFound",
    );
    expect_code(
        client.describe_cache_parameters().cache_parameter_group_name("my-params").send().await,
        "CacheParameterGroupNotFound",
    );
    expect_code(
        client.delete_cache_parameter_group().cache_parameter_group_name("my-params").send().await,
        "CacheParameterGroupNotFound",
    );
    // The name is free again.
    create_pg(&client, "my-params", "memcached1.6").await;
}

#[tokio::test]
async fn every_family_can_be_used() {
    let server = TestServer::start().await;
    let client = server.client();
    for family in FAMILIES {
        let name = format!("pg-{}", family.replace('.', "-"));
        let group = create_pg(&client, &name, family).await;
        assert_eq!(group.cache_parameter_group_family(), Some(family));
        assert!(!all_params(&client, &name, None).await.is_empty(), "{family} group has parameters");
    }
}

#[tokio::test]
async fn names_are_stored_lowercase() {
    let server = TestServer::start().await;
    let client = server.client();
    let created = create_pg(&client, "MyGroup", "redis7").await;
    assert_eq!(created.cache_parameter_group_name(), Some("mygroup"));
    let described =
        client.describe_cache_parameter_groups().cache_parameter_group_name("mygroup").send().await.unwrap();
    assert_eq!(described.cache_parameter_groups()[0].cache_parameter_group_name(), Some("mygroup"));
    assert!(described.cache_parameter_groups()[0].arn().is_some_and(|a| a.ends_with(":parametergroup:mygroup")));
    // Identifiers are case-insensitive, as on AWS.
    let upper = client.describe_cache_parameter_groups().cache_parameter_group_name("MYGROUP").send().await.unwrap();
    assert_eq!(upper.cache_parameter_groups().len(), 1);
    expect_code(
        client
            .create_cache_parameter_group()
            .cache_parameter_group_name("MYGROUP")
            .cache_parameter_group_family("redis7")
            .description("dup")
            .send()
            .await,
        "CacheParameterGroupAlreadyExists",
    );
    assert!(!all_pg_names(&client).await.iter().any(|n| n != "mygroup" && n.eq_ignore_ascii_case("mygroup")));
}

#[tokio::test]
async fn create_rejects_invalid_names_and_families() {
    let server = TestServer::start().await;
    let client = server.client();
    let before = all_pg_names(&client).await;
    let too_long = format!("a{}", "b".repeat(255));
    for name in [
        "1starts-with-digit",
        "-leading",
        "trailing-",
        "double--hyphen",
        "under_score",
        "dot.ted",
        "sp ace",
        too_long.as_str(),
    ] {
        let result = client
            .create_cache_parameter_group()
            .cache_parameter_group_name(name)
            .cache_parameter_group_family("redis7")
            .description("bad")
            .send()
            .await;
        let error = api_error(result);
        assert_eq!(error.code, "InvalidParameterValue", "name {name:?}: {error:?}");
        assert_eq!(error.status, 400);
    }
    let error = expect_code(
        client
            .create_cache_parameter_group()
            .cache_parameter_group_name("good-name")
            .cache_parameter_group_family("redis99")
            .description("bad family")
            .send()
            .await,
        "InvalidParameterValue",
    );
    assert!(!error.message.is_empty(), "the error says why");
    assert_eq!(all_pg_names(&client).await, before, "failed creates change nothing");

    // 255 characters is allowed.
    let longest = format!("a{}", "b".repeat(254));
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name(&longest)
        .cache_parameter_group_family("redis7")
        .description("longest name")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn create_duplicate_fails_and_keeps_the_original() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "dup", "redis7").await;
    let result = client
        .create_cache_parameter_group()
        .cache_parameter_group_name("dup")
        .cache_parameter_group_family("memcached1.6")
        .description("second")
        .send()
        .await;
    let error = result.expect_err("duplicate create must fail");
    assert!(error.as_service_error().is_some_and(|e| e.is_cache_parameter_group_already_exists_fault()), "{error:?}");
    let described = client.describe_cache_parameter_groups().cache_parameter_group_name("dup").send().await.unwrap();
    let group = &described.cache_parameter_groups()[0];
    assert_eq!(group.cache_parameter_group_family(), Some("redis7"));
    assert_eq!(group.description(), Some("e2e dup"));
    // A default group's name cannot be taken either (whether as a duplicate or as a name with
    // dots, which user names may not have).
    let e = api_error(
        client
            .create_cache_parameter_group()
            .cache_parameter_group_name("default.redis7")
            .cache_parameter_group_family("memcached1.6")
            .description("x")
            .send()
            .await,
    );
    assert!(["CacheParameterGroupAlreadyExists", "InvalidParameterValue"].contains(&e.code.as_str()), "{e:?}");
    let described =
        client.describe_cache_parameter_groups().cache_parameter_group_name("default.redis7").send().await.unwrap();
    assert_eq!(described.cache_parameter_groups()[0].cache_parameter_group_family(), Some("redis7"));
}

#[tokio::test]
async fn unknown_group_is_not_found_everywhere() {
    let server = TestServer::start().await;
    let client = server.client();
    let error = client.describe_cache_parameter_groups().cache_parameter_group_name("nope").send().await.unwrap_err();
    assert!(error.as_service_error().is_some_and(|e| e.is_cache_parameter_group_not_found_fault()), "{error:?}");
    let e = expect_code(
        client.describe_cache_parameters().cache_parameter_group_name("nope").send().await,
        "CacheParameterGroupNotFound",
    );
    assert_eq!(e.status, 404);
    expect_code(
        client
            .modify_cache_parameter_group()
            .cache_parameter_group_name("nope")
            .parameter_name_values(pnv("timeout", "10"))
            .send()
            .await,
        "CacheParameterGroupNotFound",
    );
    expect_code(
        client.reset_cache_parameter_group().cache_parameter_group_name("nope").reset_all_parameters(true).send().await,
        "CacheParameterGroupNotFound",
    );
    expect_code(
        client.delete_cache_parameter_group().cache_parameter_group_name("nope").send().await,
        "CacheParameterGroupNotFound",
    );
}

#[tokio::test]
async fn modify_sets_user_values_and_reset_clears_them() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "tuned", "redis7").await;
    let out = client
        .modify_cache_parameter_group()
        .cache_parameter_group_name("tuned")
        .parameter_name_values(pnv("maxmemory-policy", "allkeys-lru"))
        .parameter_name_values(pnv("timeout", "300"))
        .parameter_name_values(pnv("active-defrag-cycle-max", "50"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.cache_parameter_group_name(), Some("tuned"));

    let user = all_params(&client, "tuned", Some("user")).await;
    let mut user_names: Vec<_> = user.iter().filter_map(|p| p.parameter_name()).collect();
    user_names.sort();
    assert_eq!(user_names, ["active-defrag-cycle-max", "maxmemory-policy", "timeout"]);
    assert!(user.iter().all(|p| p.source() == Some("user")), "{user:?}");
    assert_eq!(value_of(&user, "maxmemory-policy"), Some("allkeys-lru"));
    assert_eq!(value_of(&user, "timeout"), Some("300"));

    let system = all_params(&client, "tuned", Some("system")).await;
    assert!(!system.is_empty());
    assert!(system.iter().all(|p| p.source() == Some("system")), "Source=system returns only system parameters");
    assert_eq!(value_of(&system, "maxmemory-policy"), None, "a user-set parameter is not a system one");

    let all = all_params(&client, "tuned", None).await;
    let entry = all.iter().find(|p| p.parameter_name() == Some("maxmemory-policy")).unwrap();
    assert_eq!(entry.parameter_value(), Some("allkeys-lru"));
    assert_eq!(entry.source(), Some("user"));

    // The family default is untouched.
    assert_eq!(value_of(&all_params(&client, "default.redis7", None).await, "maxmemory-policy"), Some("volatile-lru"));

    // Reset of one parameter by name.
    let out = client
        .reset_cache_parameter_group()
        .cache_parameter_group_name("tuned")
        .parameter_name_values(crate::ParameterNameValue::builder().parameter_name("timeout").build())
        .send()
        .await
        .unwrap();
    assert_eq!(out.cache_parameter_group_name(), Some("tuned"));
    let user = all_params(&client, "tuned", Some("user")).await;
    assert_eq!(value_of(&user, "timeout"), None);
    assert_eq!(value_of(&user, "maxmemory-policy"), Some("allkeys-lru"));
    assert_eq!(value_of(&all_params(&client, "tuned", None).await, "timeout"), Some("0"));

    // Reset of everything.
    client
        .reset_cache_parameter_group()
        .cache_parameter_group_name("tuned")
        .reset_all_parameters(true)
        .send()
        .await
        .unwrap();
    assert!(all_params(&client, "tuned", Some("user")).await.is_empty());
    assert_eq!(value_of(&all_params(&client, "tuned", None).await, "maxmemory-policy"), Some("volatile-lru"));
}

#[tokio::test]
async fn modify_rejects_bad_parameters_atomically() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "strict", "redis7").await;
    let modify = |pairs: Vec<(&'static str, &'static str)>| {
        let mut request = client.modify_cache_parameter_group().cache_parameter_group_name("strict");
        for (name, value) in pairs {
            request = request.parameter_name_values(pnv(name, value));
        }
        request.send()
    };
    // Unknown parameter (even alongside a valid one: nothing is applied).
    expect_code(modify(vec![("timeout", "60"), ("no-such-parameter", "1")]).await, "InvalidParameterValue");
    // Not modifiable.
    expect_code(modify(vec![("databases", "32")]).await, "InvalidParameterValue");
    expect_code(modify(vec![("cluster-enabled", "yes")]).await, "InvalidParameterValue");
    // Outside AllowedValues: enumeration and range.
    expect_code(modify(vec![("maxmemory-policy", "sometimes-lru")]).await, "InvalidParameterValue");
    expect_code(modify(vec![("active-defrag-cycle-max", "76")]).await, "InvalidParameterValue");
    expect_code(modify(vec![("active-defrag-cycle-max", "0")]).await, "InvalidParameterValue");
    expect_code(modify(vec![("active-defrag-cycle-max", "ten")]).await, "InvalidParameterValue");
    assert!(all_params(&client, "strict", Some("user")).await.is_empty(), "rejected modifications change nothing");

    // Memcached parameters are checked against their own family.
    create_pg(&client, "strict-mc", "memcached1.6").await;
    expect_code(
        client
            .modify_cache_parameter_group()
            .cache_parameter_group_name("strict-mc")
            .parameter_name_values(pnv("maxmemory-policy", "allkeys-lru"))
            .send()
            .await,
        "InvalidParameterValue",
    );
}

/// AWS answers `InvalidParameterCombination: Cannot modify more than 20 parameters in a single
/// request` (quoted in hashicorp/terraform-provider-aws#1221, which is why Terraform batches by
/// 20).
#[tokio::test]
async fn modify_accepts_at_most_20_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "many", "redis7").await;
    let modifiable: Vec<String> = all_params(&client, "many", None)
        .await
        .into_iter()
        .filter(|p| p.is_modifiable() == Some(true) && p.parameter_value().is_some_and(|v| !v.is_empty()))
        .filter_map(|p| p.parameter_name)
        .collect();
    assert!(modifiable.len() > 21, "redis7 has more than 21 modifiable parameters");
    let defaults = all_params(&client, "many", None).await;
    let request = |n: usize| {
        let mut request = client.modify_cache_parameter_group().cache_parameter_group_name("many");
        for name in &modifiable[..n] {
            // Setting a parameter to its current value is a valid modification.
            request = request.parameter_name_values(pnv(name, value_of(&defaults, name).unwrap()));
        }
        request.send()
    };
    let error = api_error(request(21).await);
    assert_eq!(error.code, "InvalidParameterCombination", "{error:?}");
    assert!(all_params(&client, "many", Some("user")).await.is_empty());
    request(20).await.expect("20 parameters are allowed");
    assert_eq!(all_params(&client, "many", Some("user")).await.len(), 20);
}

#[tokio::test]
async fn reset_needs_exactly_one_of_all_or_a_list() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "resettable", "redis7").await;
    client
        .modify_cache_parameter_group()
        .cache_parameter_group_name("resettable")
        .parameter_name_values(pnv("timeout", "120"))
        .send()
        .await
        .unwrap();
    expect_code(
        client.reset_cache_parameter_group().cache_parameter_group_name("resettable").send().await,
        "InvalidParameterCombination",
    );
    expect_code(
        client
            .reset_cache_parameter_group()
            .cache_parameter_group_name("resettable")
            .reset_all_parameters(false)
            .send()
            .await,
        "InvalidParameterCombination",
    );
    // Resetting an unknown parameter is as invalid as modifying one.
    expect_code(
        client
            .reset_cache_parameter_group()
            .cache_parameter_group_name("resettable")
            .parameter_name_values(crate::ParameterNameValue::builder().parameter_name("no-such-parameter").build())
            .send()
            .await,
        "InvalidParameterValue",
    );
    assert_eq!(value_of(&all_params(&client, "resettable", Some("user")).await, "timeout"), Some("120"));
}

#[tokio::test]
async fn default_groups_are_read_only() {
    let server = TestServer::start().await;
    let client = server.client();
    let allowed = ["InvalidParameterValue", "InvalidCacheParameterGroupState"];
    let before = all_params(&client, "default.redis7", None).await;

    let e = api_error(
        client
            .modify_cache_parameter_group()
            .cache_parameter_group_name("default.redis7")
            .parameter_name_values(pnv("maxmemory-policy", "allkeys-lru"))
            .send()
            .await,
    );
    assert!(allowed.contains(&e.code.as_str()) && e.status == 400, "modify default: {e:?}");
    let e = api_error(
        client
            .reset_cache_parameter_group()
            .cache_parameter_group_name("default.valkey8")
            .reset_all_parameters(true)
            .send()
            .await,
    );
    assert!(allowed.contains(&e.code.as_str()) && e.status == 400, "reset default: {e:?}");
    for (name, _) in default_groups() {
        let e = api_error(client.delete_cache_parameter_group().cache_parameter_group_name(&name).send().await);
        assert!(allowed.contains(&e.code.as_str()) && e.status == 400, "delete {name}: {e:?}");
    }
    assert_eq!(all_params(&client, "default.redis7", None).await, before);
    let names = all_pg_names(&client).await;
    for (name, _) in default_groups() {
        assert!(names.contains(&name), "{name} survives");
    }
}

#[tokio::test]
async fn describe_cache_parameters_pages_and_validates_max_records() {
    let server = TestServer::start().await;
    let client = server.client();
    create_pg(&client, "paged", "redis7").await;
    let unpaged = client.describe_cache_parameters().cache_parameter_group_name("paged").send().await.unwrap();
    let mut seen = Vec::new();
    let mut marker = None;
    let mut pages = 0;
    loop {
        let out = client
            .describe_cache_parameters()
            .cache_parameter_group_name("paged")
            .max_records(20)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        assert!(out.parameters().len() <= 20);
        pages += 1;
        seen.extend(out.parameters().iter().filter_map(|p| p.parameter_name.clone()));
        marker = out.marker;
        if marker.is_none() {
            break;
        }
        assert!(pages < 50, "pagination does not end");
    }
    assert!(pages >= 3, "redis7 has more than 40 parameters, so 20 per page takes several pages");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no parameter twice");
    let expected: HashSet<_> = unpaged.parameters().iter().filter_map(|p| p.parameter_name.as_ref()).collect();
    assert_eq!(unique, expected);
    for bad in [0, 19, 101] {
        expect_code(
            client.describe_cache_parameters().cache_parameter_group_name("paged").max_records(bad).send().await,
            "InvalidParameterValue",
        );
    }
}

#[tokio::test]
async fn describe_cache_parameters_reports_metadata() {
    let server = TestServer::start().await;
    let client = server.client();
    let out = client.describe_cache_parameters().cache_parameter_group_name("default.redis7").send().await.unwrap();
    let policy = out.parameters().iter().find(|p| p.parameter_name() == Some("maxmemory-policy")).unwrap();
    assert_eq!(policy.is_modifiable(), Some(true));
    assert_eq!(policy.data_type(), Some("string"));
    assert!(policy.allowed_values().is_some_and(|v| v.contains("allkeys-lru")));
    assert!(policy.description().is_some_and(|d| !d.is_empty()));
    let databases = out.parameters().iter().find(|p| p.parameter_name() == Some("databases")).unwrap();
    assert_eq!(databases.is_modifiable(), Some(false));
    // maxmemory depends on the node type.
    let maxmemory = out
        .cache_node_type_specific_parameters()
        .iter()
        .find(|p| p.parameter_name() == Some("maxmemory"))
        .expect("maxmemory among CacheNodeTypeSpecificParameters");
    assert!(!maxmemory.cache_node_type_specific_values().is_empty());
}

#[tokio::test]
async fn engine_default_parameters_for_every_family_and_paged() {
    let server = TestServer::start().await;
    let client = server.client();
    for family in FAMILIES {
        let full =
            client.describe_engine_default_parameters().cache_parameter_group_family(family).send().await.unwrap();
        let defaults = full.engine_defaults().expect("EngineDefaults");
        assert_eq!(defaults.cache_parameter_group_family(), Some(family));
        assert!(defaults.parameters().len() > 20, "{family} has more than one page of parameters");
        let expected: HashSet<_> = defaults.parameters().iter().filter_map(|p| p.parameter_name.clone()).collect();

        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        let mut pages = 0;
        loop {
            let out = client
                .describe_engine_default_parameters()
                .cache_parameter_group_family(family)
                .max_records(20)
                .set_marker(marker)
                .send()
                .await
                .unwrap();
            let page = out.engine_defaults().expect("EngineDefaults");
            assert!(page.parameters().len() <= 20);
            seen.extend(page.parameters().iter().filter_map(|p| p.parameter_name.clone()));
            pages += 1;
            marker = page.marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
            assert!(pages < 50, "pagination does not end");
        }
        assert!(pages >= 2, "{family}: more than one page");
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{family}: no parameter twice");
        assert_eq!(unique, expected, "{family}: pages cover everything");
    }
    let redis =
        client.describe_engine_default_parameters().cache_parameter_group_family("redis7").send().await.unwrap();
    assert_eq!(value_of(redis.engine_defaults().unwrap().parameters(), "maxmemory-policy"), Some("volatile-lru"));
    let memcached =
        client.describe_engine_default_parameters().cache_parameter_group_family("memcached1.6").send().await.unwrap();
    assert_eq!(value_of(memcached.engine_defaults().unwrap().parameters(), "maxmemory-policy"), None);

    expect_code(
        client.describe_engine_default_parameters().cache_parameter_group_family("redis99").send().await,
        "InvalidParameterValue",
    );
    expect_code(
        client.describe_engine_default_parameters().cache_parameter_group_family("redis7").max_records(10).send().await,
        "InvalidParameterValue",
    );
}
