//! The generated dispatcher and the XML envelopes, over every operation of the model.

use proptest::prelude::*;
use protocol::shapes::*;
use protocol::{ApiError, ElastiCache, OPERATIONS, QueryParams, RequestContext, dispatch};
use quick_xml::Reader;
use quick_xml::events::Event;

/// A service that overrides one operation and leaves every other at its default.
struct OneOperation;

impl ElastiCache for OneOperation {
    async fn describe_cache_parameter_groups(
        &self,
        _ctx: &RequestContext,
        input: DescribeCacheParameterGroupsMessage,
    ) -> Result<CacheParameterGroupsMessage, ApiError> {
        Ok(CacheParameterGroupsMessage {
            cache_parameter_groups: Some(vec![CacheParameterGroup {
                cache_parameter_group_name: input.cache_parameter_group_name,
                description: Some("<a & b>".into()),
                is_global: Some(false),
                ..Default::default()
            }]),
            marker: None,
        })
    }
}

fn ctx() -> RequestContext {
    RequestContext { request_id: "req-1".into(), region: "us-east-1".into(), account: "000000000000".into() }
}

fn run(form: &str) -> Result<String, ApiError> {
    let q = QueryParams::parse(form.as_bytes());
    let action = q.get("Action").unwrap_or("").to_string();
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(dispatch(
        &OneOperation,
        &ctx(),
        &action,
        &q,
    ))
}

/// Element names along the path to each text node, as `A/B/C=text`.
fn flatten(xml: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned()),
            Event::End(_) => {
                if !text.is_empty() {
                    out.push(format!("{}={}", path.join("/"), std::mem::take(&mut text)));
                }
                path.pop();
            }
            Event::Text(t) => text.push_str(&t.decode().expect("utf-8")),
            Event::GeneralRef(r) => {
                let name = r.decode().expect("utf-8");
                text.push_str(quick_xml::escape::resolve_predefined_entity(&name).expect("predefined entity"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

#[test]
fn the_model_has_77_operations() {
    assert_eq!(OPERATIONS.len(), 77);
}

#[test]
fn a_response_is_the_aws_envelope_with_the_result_first() {
    let xml = run("Action=DescribeCacheParameterGroups&CacheParameterGroupName=g1").expect("implemented");
    assert!(xml.starts_with(
        "<DescribeCacheParameterGroupsResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><DescribeCacheParameterGroupsResult>"
    ));
    assert_eq!(
        flatten(&xml),
        vec![
            "DescribeCacheParameterGroupsResponse/DescribeCacheParameterGroupsResult/CacheParameterGroups/CacheParameterGroup/CacheParameterGroupName=g1",
            "DescribeCacheParameterGroupsResponse/DescribeCacheParameterGroupsResult/CacheParameterGroups/CacheParameterGroup/Description=<a & b>",
            "DescribeCacheParameterGroupsResponse/DescribeCacheParameterGroupsResult/CacheParameterGroups/CacheParameterGroup/IsGlobal=false",
            "DescribeCacheParameterGroupsResponse/ResponseMetadata/RequestId=req-1",
        ]
    );
}

#[test]
fn an_error_is_the_aws_error_envelope() {
    let error = ApiError::missing_parameter("CacheClusterId");
    let xml = protocol::xml::error_response(&error, "req-2");
    assert_eq!(
        flatten(&xml),
        vec![
            "ErrorResponse/Error/Type=Sender",
            "ErrorResponse/Error/Code=MissingParameter",
            "ErrorResponse/Error/Message=The request must contain the parameter CacheClusterId",
            "ErrorResponse/RequestId=req-2",
        ]
    );
}

#[test]
fn model_errors_carry_the_models_code_and_status() {
    let e = ApiError::new(protocol::ErrorCode::CacheClusterNotFoundFault, "x");
    assert_eq!((e.code, e.status), ("CacheClusterNotFound", 404));
    let e = ApiError::new(protocol::ErrorCode::CacheSubnetGroupNotFoundFault, "x");
    assert_eq!((e.code, e.status), ("CacheSubnetGroupNotFoundFault", 400));
    let e = ApiError::new(protocol::ErrorCode::CacheSecurityGroupQuotaExceededFault, "x");
    assert_eq!(e.code, "QuotaExceeded.CacheSecurityGroup");
    assert!(protocol::ErrorCode::ALL.iter().all(|c| (400..500).contains(&c.http_status())));
}

#[test]
fn every_operation_decodes_and_unwritten_ones_name_themselves() {
    for op in OPERATIONS {
        match run(&format!("Action={op}")) {
            Ok(_) => assert_eq!(*op, "DescribeCacheParameterGroups"),
            Err(e) if e.code == "MissingParameter" => assert_eq!(e.status, 400),
            Err(e) => {
                assert_eq!((e.code, e.status), ("NotImplemented", 501), "{op}");
                assert!(e.message.contains(op), "{op}: {}", e.message);
            }
        }
    }
    assert_eq!(run("Action=Bogus").unwrap_err().code, "InvalidAction");
}

/// Keys drawn from the model's own vocabulary, so that random input reaches deep into
/// the decoders rather than being ignored.
fn key() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "Tags",
        "Tag",
        "Key",
        "Value",
        "member",
        "CacheClusterId",
        "NumCacheNodes",
        "AZMode",
        "Filters",
        "Name",
        "Values",
        "NodeGroupConfiguration",
        "NodeGroupConfiguration",
        "Slots",
        "ReplicaCount",
        "LogDeliveryConfigurations",
        "LogDeliveryConfigurationRequest",
        "DestinationDetails",
        "StartTime",
        "SecurityGroupIds",
        "SecurityGroupId",
        "ApplyImmediately",
        "MaxRecords",
        "1",
        "2",
        "0",
        "-1",
        "ParameterNameValues",
        "ParameterNameValue",
        "ParameterName",
        "ParameterValue",
        "CacheUsageLimits",
    ]);
    prop::collection::vec(words, 1..6).prop_map(|parts| parts.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let q = QueryParams::parse(&body);
        for op in OPERATIONS.iter().take(5) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            if let Err(e) = runtime.block_on(dispatch(&OneOperation, &ctx(), op, &q)) {
                prop_assert!(e.status < 500 || e.code == "NotImplemented");
            }
        }
    }

    #[test]
    fn structured_random_forms_never_panic(
        pairs in prop::collection::vec((key(), "[a-z0-9.:-]{0,8}"), 0..24),
        cut in 0usize..400,
    ) {
        let form: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        let truncated = &form.as_bytes()[..cut.min(form.len())];
        let q = QueryParams::parse(truncated);
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        for op in OPERATIONS {
            if let Err(e) = runtime.block_on(dispatch(&OneOperation, &ctx(), op, &q)) {
                prop_assert!(e.status < 500 || e.code == "NotImplemented", "{op}: {e}");
            }
        }
    }
}
