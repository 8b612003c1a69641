//! One function per generated file.

use std::fmt::Write;

use crate::{Model, field_name, snake_case, variant_name};

pub fn module() -> String {
    "//! Everything here is generated from the ElastiCache API model.\n\n\
     pub mod decode;\npub mod encode;\npub mod errors;\npub mod service;\npub mod shapes;\n"
        .to_string()
}

/// Structures reachable from any operation's input or output, and the enums they use.
fn shape_names(model: &Model) -> Vec<String> {
    let mut all = model.input_shapes();
    all.extend(model.output_shapes());
    all.into_iter()
        .filter(|n| {
            (model.kind(n) == "structure" && !model.is_exception(n)) || (model.kind(n) == "string" && model.is_enum(n))
        })
        .collect()
}

fn string_bounds(model: &Model, shape: &str, key: &str) -> Option<u64> {
    model.shape(shape)[key].as_u64()
}

pub fn shapes(model: &Model) -> String {
    let mut out = String::from(
        "//! Every structure and enum of the model as a Rust type. Members are `Option`s unless the\n\
         //! model requires them.\n\n#![allow(clippy::upper_case_acronyms)]\n\npub use aws_smithy_types::DateTime;\n",
    );
    for name in shape_names(model) {
        out.push('\n');
        if model.kind(&name) == "string" {
            emit_enum(model, &name, &mut out);
        } else {
            emit_struct(model, &name, &mut out);
        }
    }
    out
}

fn enum_values(model: &Model, name: &str) -> Vec<String> {
    model.shape(name)["enum"]
        .as_array()
        .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn emit_enum(model: &Model, name: &str, out: &mut String) {
    let values = enum_values(model, name);
    let _ = writeln!(out, "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\npub enum {name} {{");
    for v in &values {
        let _ = writeln!(out, "    {},", variant_name(v));
    }
    let _ = writeln!(out, "}}\n\nimpl {name} {{");
    let list = values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(out, "    pub const VALUES: &'static [&'static str] = &[{list}];\n");
    let _ = writeln!(out, "    pub fn as_str(&self) -> &'static str {{\n        match self {{");
    for v in &values {
        let _ = writeln!(out, "            Self::{} => {v:?},", variant_name(v));
    }
    let _ = writeln!(out, "        }}\n    }}\n");
    let _ = writeln!(out, "    pub fn from_wire(value: &str) -> Option<Self> {{\n        match value {{");
    for v in &values {
        let _ = writeln!(out, "            {v:?} => Some(Self::{}),", variant_name(v));
    }
    let _ = writeln!(out, "            _ => None,\n        }}\n    }}\n}}");
}

fn emit_struct(model: &Model, name: &str, out: &mut String) {
    let required = model.required(name);
    let derives = if model.has_default(name) { "Debug, Clone, Default, PartialEq" } else { "Debug, Clone, PartialEq" };
    let _ = writeln!(out, "#[derive({derives})]\npub struct {name} {{");
    for (member, shape) in model.members(name) {
        let ty = model.rust_type(&shape);
        let ty = if required.contains(&member) { ty } else { format!("Option<{ty}>") };
        let _ = writeln!(out, "    pub {}: {ty},", field_name(&member));
    }
    let _ = writeln!(out, "}}");
}

pub fn decode(model: &Model) -> String {
    let mut out = String::from(
        "//! [`FromQuery`] for every shape an operation's input can contain.\n\n\
         use crate::ApiError;\nuse crate::query::{FromQuery, QueryParams, check_list_len, check_str_len, enum_value, join, list, required};\n\
         use super::shapes::*;\n",
    );
    let inputs = model.input_shapes();
    for name in shape_names(model).into_iter().filter(|n| inputs.contains(n)) {
        out.push('\n');
        if model.kind(&name) == "string" {
            let _ = writeln!(
                out,
                "impl FromQuery for {name} {{\n    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {{\n        enum_value(q, path, Self::from_wire, Self::VALUES)\n    }}\n}}"
            );
            continue;
        }
        let required = model.required(&name);
        let _ = writeln!(
            out,
            "impl FromQuery for {name} {{\n    fn from_query(q: &QueryParams, path: &str) -> Result<Option<Self>, ApiError> {{"
        );
        // The top-level input lives at the empty path and is always present.
        let _ = writeln!(
            out,
            "        if !path.is_empty() && !q.has_prefix(path) {{\n            return Ok(None);\n        }}"
        );
        let members = model.members(&name);
        for (member, shape) in &members {
            let field = field_name(member);
            let key = format!("join(path, {member:?})");
            let value = if model.kind(shape) == "list" {
                let (item, wire) = model.list_member(shape);
                format!("list::<{}>(q, &{key}, {wire:?})?", model.rust_type(&item))
            } else {
                format!("<{}>::from_query(q, &{key})?", model.rust_type(shape))
            };
            let _ = writeln!(out, "        let {field} = {value};");
            let bound = |k| string_bounds(model, shape, k).map_or("None".to_string(), |n| format!("Some({n})"));
            let (min, max) = (bound("min"), bound("max"));
            if min != "None" || max != "None" {
                let check = if model.kind(shape) == "list" { "check_list_len" } else { "check_str_len" };
                let _ = writeln!(out, "        {check}(&{key}, &{field}, {min}, {max})?;");
            }
        }
        let _ = writeln!(out, "        Ok(Some(Self {{");
        for (member, _) in &members {
            let field = field_name(member);
            if required.contains(member) {
                let _ = writeln!(out, "            {field}: required(&join(path, {member:?}), {field})?,");
            } else {
                let _ = writeln!(out, "            {field},");
            }
        }
        let _ = writeln!(out, "        }}))\n    }}\n}}");
    }
    out
}

pub fn encode(model: &Model) -> String {
    let mut out = String::from(
        "//! [`ToXml`] for every shape an operation's output can contain.\n\n\
         use crate::xml::{ToXml, XmlMembers, XmlWriter};\nuse super::shapes::*;\n",
    );
    let outputs = model.output_shapes();
    for name in shape_names(model).into_iter().filter(|n| outputs.contains(n)) {
        out.push('\n');
        if model.kind(&name) == "string" {
            let _ = writeln!(
                out,
                "impl ToXml for {name} {{\n    fn write_xml(&self, w: &mut XmlWriter, name: &str) {{\n        w.text_element(name, self.as_str());\n    }}\n}}"
            );
            continue;
        }
        let required = model.required(&name);
        let members = model.members(&name);
        let w = if members.is_empty() { "_w" } else { "w" };
        let _ = writeln!(out, "impl XmlMembers for {name} {{\n    fn write_members(&self, {w}: &mut XmlWriter) {{");
        for (member, shape) in &members {
            let field = field_name(member);
            let is_required = required.contains(member);
            if model.kind(shape) == "list" {
                let (_, wire) = model.list_member(shape);
                if is_required {
                    let _ = writeln!(out, "        w.items({member:?}, {wire:?}, &self.{field});");
                } else {
                    let _ = writeln!(out, "        w.list({member:?}, {wire:?}, &self.{field});");
                }
            } else if is_required {
                let _ = writeln!(out, "        self.{field}.write_xml(w, {member:?});");
            } else {
                let _ = writeln!(out, "        w.member({member:?}, &self.{field});");
            }
        }
        let _ = writeln!(out, "    }}\n}}\n");
        let _ = writeln!(
            out,
            "impl ToXml for {name} {{\n    fn write_xml(&self, w: &mut XmlWriter, name: &str) {{\n        w.open(name);\n        self.write_members(w);\n        w.close(name);\n    }}\n}}"
        );
    }
    out
}

pub fn errors(model: &Model) -> String {
    let mut out = String::from(
        "//! Every error shape of the model: its wire code, HTTP status and fault side.\n\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\npub enum ErrorCode {\n",
    );
    let errors: Vec<(String, String, u64, bool)> = model
        .shapes
        .iter()
        .filter(|(n, _)| model.is_exception(n))
        .map(|(n, s)| {
            let e = &s["error"];
            (
                n.clone(),
                e["code"].as_str().unwrap_or(n).to_string(),
                e["httpStatusCode"].as_u64().unwrap_or(400),
                e["senderFault"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    for (name, ..) in &errors {
        let _ = writeln!(out, "    {name},");
    }
    out.push_str("}\n\nimpl ErrorCode {\n    pub const ALL: &'static [ErrorCode] = &[\n");
    for (name, ..) in &errors {
        let _ = writeln!(out, "        Self::{name},");
    }
    out.push_str("    ];\n\n    /// The `<Code>` clients match on.\n    pub fn code(self) -> &'static str {\n        match self {\n");
    for (name, code, ..) in &errors {
        let _ = writeln!(out, "            Self::{name} => {code:?},");
    }
    out.push_str("        }\n    }\n\n    pub fn http_status(self) -> u16 {\n        match self {\n");
    for (name, _, status, _) in &errors {
        let _ = writeln!(out, "            Self::{name} => {status},");
    }
    out.push_str("        }\n    }\n\n    pub fn sender_fault(self) -> bool {\n        match self {\n");
    for (name, .., sender) in &errors {
        let _ = writeln!(out, "            Self::{name} => {sender},");
    }
    out.push_str("        }\n    }\n}\n");
    out
}

pub fn service(model: &Model) -> String {
    let mut out = String::from(
        "//! The [`ElastiCache`] service trait, one method per operation, and [`dispatch`], which\n\
         //! decodes a request, calls the method and encodes its answer.\n\n\
         use std::future::Future;\n\nuse crate::query::{FromQuery, QueryParams};\nuse crate::{ApiError, RequestContext, xml};\n\
         use super::shapes::*;\n\n",
    );
    out.push_str("/// Every operation of the model, by wire name.\npub const OPERATIONS: &[&str] = &[\n");
    for op in model.operations.keys() {
        let _ = writeln!(out, "    {op:?},");
    }
    out.push_str("];\n\n");
    out.push_str(
        "/// One method per operation. Each answers \"not implemented\" until overridden, so an\n\
         /// operation is written by overriding its method and nothing else.\n\
         pub trait ElastiCache: Send + Sync {\n",
    );
    for op in model.operations.keys() {
        let input = model.op_shape(op, "input").unwrap_or_else(|| "()".to_string());
        let output = model.op_shape(op, "output").unwrap_or_else(|| "()".to_string());
        let _ = writeln!(
            out,
            "    fn {}(\n        &self,\n        ctx: &RequestContext,\n        input: {input},\n    ) -> impl Future<Output = Result<{output}, ApiError>> + Send {{\n        let _ = (ctx, input);\n        async {{ Err(ApiError::not_implemented({op:?})) }}\n    }}\n",
            snake_case(op)
        );
    }
    out.push_str("}\n\n");
    out.push_str(
        "fn input<T: FromQuery>(q: &QueryParams) -> Result<T, ApiError> {\n    T::from_query(q, \"\")?.ok_or_else(|| ApiError::internal(\"the top-level input always decodes\"))\n}\n\n",
    );
    out.push_str(
        "/// Runs `action` on `service` and returns the XML response body.\n\
         pub async fn dispatch<S: ElastiCache>(\n    service: &S,\n    ctx: &RequestContext,\n    action: &str,\n    q: &QueryParams,\n) -> Result<String, ApiError> {\n    match action {\n",
    );
    for op in model.operations.keys() {
        let method = snake_case(op);
        let call = if model.op_shape(op, "input").is_some() {
            format!("service.{method}(ctx, input(q)?).await?")
        } else {
            format!("service.{method}(ctx, ()).await?")
        };
        if model.op_shape(op, "output").is_some() {
            let _ = writeln!(
                out,
                "        {op:?} => {{\n            let output = {call};\n            Ok(xml::response({op:?}, Some(&output), &ctx.request_id))\n        }}"
            );
        } else {
            let _ = writeln!(
                out,
                "        {op:?} => {{\n            {call};\n            Ok(xml::response::<()>({op:?}, None, &ctx.request_id))\n        }}"
            );
        }
    }
    out.push_str("        _ => Err(ApiError::invalid_action(action)),\n    }\n}\n");
    out
}
