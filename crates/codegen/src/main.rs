//! `cargo run -p codegen`: regenerates `crates/protocol/src/generated/` from the model.

use std::path::Path;

fn main() -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(root.join(codegen::MODEL_PATH)).map_err(|e| e.to_string())?;
    let model = codegen::Model::from_json(&text)?;
    let out = root.join(codegen::OUTPUT_DIR);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    for (name, contents) in codegen::generate(&model) {
        std::fs::write(out.join(&name), contents).map_err(|e| format!("{name}: {e}"))?;
    }
    println!("regenerated {}", out.display());
    Ok(())
}
