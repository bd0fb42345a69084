//! The JSON Schemas reconciler publishes: definitions files (for editors,
//! through a `# yaml-language-server: $schema=` line) and its JSON output
//! (`plan --format json`, `apply --format json`, the watch daemon's
//! `GET /v1/status` and `reconciler status --format json`). The files in
//! the repository's schemas/ are tested to be exactly what this module
//! generates.

use schemars::{JsonSchema, generate::SchemaSettings};

use crate::apply::ApplyResult;
use crate::board::Status;
use crate::definitions::{App, Cluster};
use crate::plan::Plan;

/// Every schema file: its file name and its text.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("cluster.schema.json", render::<Cluster>()),
        ("app.schema.json", render::<App>()),
        ("plan.schema.json", render::<Plan>()),
        ("apply.schema.json", render::<ApplyResult>()),
        ("status.schema.json", render::<Status>()),
    ]
}

fn render<T: JsonSchema>() -> String {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
