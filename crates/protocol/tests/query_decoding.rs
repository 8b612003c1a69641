//! Every form of the Query encoding the model uses, decoded into generated shapes.

use protocol::shapes::*;
use protocol::{FromQuery, QueryParams};

fn decode<T: FromQuery>(form: &str) -> Result<T, protocol::ApiError> {
    let q = QueryParams::parse(form.as_bytes());
    Ok(T::from_query(&q, "")?.expect("the top-level input always decodes"))
}

#[test]
fn scalars_enums_and_lists_with_named_members() {
    let input: CreateCacheClusterMessage = decode(
        "CacheClusterId=my-cluster&NumCacheNodes=3&AZMode=cross-az&AutoMinorVersionUpgrade=true\
         &TransitEncryptionEnabled=FALSE&Engine=memcached\
         &PreferredAvailabilityZones.PreferredAvailabilityZone.1=us-east-1a\
         &PreferredAvailabilityZones.PreferredAvailabilityZone.2=us-east-1b\
         &SecurityGroupIds.SecurityGroupId.1=sg-1\
         &Tags.Tag.1.Key=team&Tags.Tag.1.Value=cache&Tags.Tag.2.Key=empty",
    )
    .expect("valid input");
    assert_eq!(input.cache_cluster_id, "my-cluster");
    assert_eq!(input.num_cache_nodes, Some(3));
    assert_eq!(input.az_mode, Some(AZMode::CrossAz));
    assert_eq!(input.auto_minor_version_upgrade, Some(true));
    assert_eq!(input.transit_encryption_enabled, Some(false));
    assert_eq!(input.preferred_availability_zones, Some(vec!["us-east-1a".to_string(), "us-east-1b".to_string()]));
    assert_eq!(input.security_group_ids, Some(vec!["sg-1".to_string()]));
    assert_eq!(
        input.tags,
        Some(vec![
            Tag { key: Some("team".into()), value: Some("cache".into()) },
            Tag { key: Some("empty".into()), value: None },
        ])
    );
    assert_eq!(input.snapshot_arns, None, "absent lists stay absent");
}

#[test]
fn nested_structures_inside_lists() {
    let input: CreateCacheClusterMessage = decode(
        "CacheClusterId=c\
         &LogDeliveryConfigurations.LogDeliveryConfigurationRequest.1.LogType=slow-log\
         &LogDeliveryConfigurations.LogDeliveryConfigurationRequest.1.DestinationType=cloudwatch-logs\
         &LogDeliveryConfigurations.LogDeliveryConfigurationRequest.1.DestinationDetails.CloudWatchLogsDetails.LogGroup=my-logs\
         &LogDeliveryConfigurations.LogDeliveryConfigurationRequest.1.Enabled=true",
    )
    .expect("valid input");
    let configs = input.log_delivery_configurations.expect("present");
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].log_type, Some(LogType::SlowLog));
    assert_eq!(configs[0].destination_type, Some(DestinationType::CloudwatchLogs));
    assert_eq!(
        configs[0]
            .destination_details
            .as_ref()
            .and_then(|d| d.cloud_watch_logs_details.as_ref())
            .and_then(|c| c.log_group.as_deref()),
        Some("my-logs")
    );
}

#[test]
fn member_lists_and_lists_inside_list_members() {
    let input: RemoveTagsFromResourceMessage =
        decode("ResourceName=arn&TagKeys.member.1=a&TagKeys.member.2=b").expect("valid input");
    assert_eq!(input.tag_keys, vec!["a".to_string(), "b".to_string()]);

    let input: DescribeUsersMessage =
        decode("Filters.member.1.Name=user-id&Filters.member.1.Values.member.1=u1&Filters.member.1.Values.member.2=u2")
            .expect("valid input");
    let filters = input.filters.expect("present");
    assert_eq!(filters[0].name, "user-id");
    assert_eq!(filters[0].values, vec!["u1".to_string(), "u2".to_string()]);
}

#[test]
fn an_empty_list_is_sent_as_the_bare_key() {
    let input: ModifyCacheClusterMessage = decode("CacheClusterId=c&SecurityGroupIds=").expect("valid input");
    assert_eq!(input.security_group_ids, Some(vec![]));
}

#[test]
fn percent_encoding_and_plus_signs() {
    let input: CreateCacheParameterGroupMessage =
        decode("CacheParameterGroupName=g&CacheParameterGroupFamily=redis7&Description=a+b%26c%3Dd%20%E2%9C%93")
            .expect("valid");
    assert_eq!(input.description, "a b&c=d ✓");
}

#[test]
fn timestamps_in_iso_8601_and_epoch_seconds() {
    let input: DescribeEventsMessage =
        decode("StartTime=2024-01-02T03:04:05.678Z&EndTime=1704164645&Duration=60&SourceType=cache-cluster")
            .expect("valid");
    assert_eq!(input.start_time.map(|t| t.secs()), Some(1_704_164_645));
    assert_eq!(input.start_time.map(|t| t.subsec_nanos() / 1_000_000), Some(678));
    assert_eq!(input.end_time.map(|t| t.secs()), Some(1_704_164_645));
    assert_eq!(input.duration, Some(60));
    assert_eq!(input.source_type, Some(SourceType::CacheCluster));
}

#[test]
fn first_occurrence_of_a_key_wins() {
    let input: DeleteCacheClusterMessage = decode("CacheClusterId=first&CacheClusterId=second").expect("valid");
    assert_eq!(input.cache_cluster_id, "first");
}

#[test]
fn bad_input_is_the_aws_error() {
    let missing =
        decode::<CreateCacheParameterGroupMessage>("CacheParameterGroupFamily=redis7&Description=d").unwrap_err();
    assert_eq!((missing.code, missing.status), ("MissingParameter", 400));
    assert!(missing.message.contains("CacheParameterGroupName"));

    let nested_missing = decode::<DescribeUsersMessage>("Filters.member.1.Values.member.1=x").unwrap_err();
    assert_eq!(nested_missing.code, "MissingParameter");
    assert!(nested_missing.message.contains("Filters.member.1.Name"), "{}", nested_missing.message);

    for (form, parameter) in [
        ("CacheClusterId=c&NumCacheNodes=three", "NumCacheNodes"),
        ("CacheClusterId=c&NumCacheNodes=99999999999", "NumCacheNodes"),
        ("CacheClusterId=c&AZMode=everywhere", "AZMode"),
        ("CacheClusterId=c&AutoMinorVersionUpgrade=yes", "AutoMinorVersionUpgrade"),
    ] {
        let error = decode::<CreateCacheClusterMessage>(form).unwrap_err();
        assert_eq!((error.code, error.status), ("InvalidParameterValue", 400), "{form}");
        assert!(error.message.contains(parameter), "{form}: {}", error.message);
    }

    let bad_time = decode::<DescribeEventsMessage>("StartTime=yesterday").unwrap_err();
    assert_eq!(bad_time.code, "InvalidParameterValue");

    let too_many: Result<DescribeCacheClustersMessage, _> = decode("MaxRecords=20");
    assert!(too_many.is_ok());
    let ids: String = (1..=21).map(|i| format!("&ReplicationGroupIds.member.{i}=rg{i}")).collect();
    let error = decode::<BatchApplyUpdateActionMessage>(&format!("ServiceUpdateName=s{ids}")).unwrap_err();
    assert_eq!(error.code, "InvalidParameterValue", "list longer than the model's max");
}

#[test]
fn a_list_with_a_gap_in_its_numbering_is_refused_not_truncated() {
    let gap = decode::<CreateCacheClusterMessage>(
        "CacheClusterId=c&Tags.Tag.1.Key=a&Tags.Tag.3.Key=c&SecurityGroupIds.SecurityGroupId.1=sg-1",
    )
    .expect_err("Tags.Tag.3 follows one member");
    assert_eq!(gap.code, "InvalidParameterValue");
    assert!(gap.message.contains("Tags.Tag.3"), "{}", gap.message);
    let zero = decode::<CreateCacheClusterMessage>("CacheClusterId=c&SnapshotArns.SnapshotArn.0=x")
        .expect_err("lists count from 1");
    assert_eq!(zero.code, "InvalidParameterValue");
}

#[test]
fn text_xml_cannot_carry_is_refused_naming_the_parameter() {
    let error = decode::<CreateCacheClusterMessage>("CacheClusterId=c&CacheSubnetGroupName=a%01b")
        .expect_err("a control character");
    assert_eq!(error.code, "InvalidParameterValue");
    assert!(error.message.contains("CacheSubnetGroupName") && !error.message.contains('\u{1}'));
    let kept: CreateCacheClusterMessage = decode("CacheClusterId=c&CacheSubnetGroupName=tab%09%E2%9C%93").unwrap();
    assert_eq!(kept.cache_subnet_group_name.as_deref(), Some("tab\t✓"));
}
