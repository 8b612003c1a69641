//! The checked-in generated code must be exactly what the generator makes of the model.

use std::path::Path;

#[test]
fn generated_code_matches_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(codegen::MODEL_PATH)).expect("model is readable");
    let model = codegen::Model::from_json(&text).expect("model parses");
    let files = codegen::generate(&model);
    assert_eq!(files.len(), 6);
    for (name, expected) in files {
        let path = root.join(codegen::OUTPUT_DIR).join(&name);
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(actual == expected, "{} is stale: run `cargo run -p codegen` and commit the result", path.display());
    }
}

#[test]
fn names_follow_rust_conventions() {
    assert_eq!(codegen::snake_case("CacheClusterId"), "cache_cluster_id");
    assert_eq!(codegen::snake_case("ARN"), "arn");
    assert_eq!(codegen::snake_case("PreferredCacheClusterAZs"), "preferred_cache_cluster_azs");
    assert_eq!(codegen::snake_case("AZMode"), "az_mode");
    assert_eq!(codegen::snake_case("CacheNodeIdsToReboot"), "cache_node_ids_to_reboot");
    assert_eq!(codegen::field_name("Type"), "r#type");
    assert_eq!(codegen::variant_name("single-az"), "SingleAz");
    assert_eq!(codegen::variant_name("SETTING"), "Setting");
    assert_eq!(codegen::variant_name("n/a"), "NA");
    assert_eq!(codegen::variant_name("dual_stack"), "DualStack");
}
