//! One renderer per unit kind, each with the typed context its template
//! receives.
//!
//! A context is the contract with a template override: the variables a
//! template in a definitions repository's `templates/` may use are exactly
//! the fields of its context, documented on the fields themselves.
//! [`reference`] turns those doc comments into the variables reference that
//! `reconciler templates --out` writes next to the templates and the README
//! shows, so the documentation cannot drift from what renders.

pub mod cron;
pub mod fpm;
pub mod logrotate;
pub mod nginx;
pub mod php_ini;
pub mod supervisor;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::{TemplateError, Templates};

/// The file `reconciler templates --out` writes the [`reference()`] to, next
/// to the templates (definitions read only `templates/*.hbs`).
pub const REFERENCE_FILE: &str = "VARIABLES.md";

/// The data one unit template renders from.
pub trait Context: Serialize + JsonSchema + Sized {
    /// The template's file name, as an override in `templates/` is named.
    const TEMPLATE: &'static str;
    /// What the rendered file is, one line for the reference.
    const FILE: &'static str;

    /// Renders this context with its template (the override, if any).
    ///
    /// # Errors
    /// The template's error, with its place, when it does not render (an
    /// override that uses a variable its context does not have, say).
    fn render(&self, templates: &Templates) -> Result<String, TemplateError> {
        templates.render(Self::TEMPLATE, self)
    }
}

/// One template's entry in the reference: its name, what it renders and
/// its variables.
struct Entry {
    template: &'static str,
    file: &'static str,
    schema: schemars::Schema,
}

fn entry<C: Context>() -> Entry {
    Entry {
        template: C::TEMPLATE,
        file: C::FILE,
        schema: schemars::schema_for!(C),
    }
}

fn entries() -> [Entry; 7] {
    [
        entry::<php_ini::PhpIni>(),
        entry::<fpm::FpmGlobal>(),
        entry::<fpm::FpmPool>(),
        entry::<nginx::Vhost>(),
        entry::<supervisor::Supervisor>(),
        entry::<cron::Cron>(),
        entry::<logrotate::Logrotate>(),
    ]
}

/// The variables every template receives, as Markdown: one section per
/// template, one line per variable (`name` (type): description), nested
/// lists for the fields of list items.
pub fn reference() -> String {
    let mut out = String::from(
        "# Template variables\n\n\
         What each unit template receives. An override in `templates/` may use\n\
         these and nothing else: a variable its file does not have fails to\n\
         render, and `reconciler validate` reports it at its line. Values are\n\
         already escaped for their file; names and numbers are validated.\n",
    );
    for entry in entries() {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", entry.template, entry.file));
        let root = entry.schema.as_value();
        fields(root, root, 0, &mut out);
    }
    out
}

/// Appends one line per property of `schema`, recursing into list items.
fn fields(root: &Value, schema: &Value, depth: usize, out: &mut String) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let property = resolve(root, property);
        let description = property
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let indent = "  ".repeat(depth);
        out.push_str(&format!(
            "{indent}- `{name}` ({}): {description}\n",
            type_name(root, property)
        ));
        if let Some(items) = property.get("items") {
            fields(root, resolve(root, items), depth + 1, out);
        }
    }
}

/// The schema a `$ref` names, or `schema` itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|path| path.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
        .unwrap_or(schema)
}

/// A short name for a property's type: `text`, `number`, `yes/no`,
/// `list of text`, `text or nothing`.
fn type_name(root: &Value, schema: &Value) -> String {
    fn single(name: &str) -> &str {
        match name {
            "string" => "text",
            "integer" | "number" => "number",
            "boolean" => "yes/no",
            "array" => "list",
            "object" => "record",
            "null" => "nothing",
            other => other,
        }
    }
    let base = match schema.get("type") {
        Some(Value::String(name)) => single(name).to_owned(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(single)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "record".to_owned(),
    };
    match schema.get("items") {
        Some(items) if base == "list" => {
            let items = resolve(root, items);
            if items.get("properties").is_some() {
                "list of records".to_owned()
            } else {
                format!("list of {}", type_name(root, items))
            }
        }
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::EMBEDDED;

    #[test]
    fn every_embedded_template_has_a_documented_context() {
        let documented: Vec<&str> = entries().iter().map(|e| e.template).collect();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        assert_eq!(documented, embedded);
        let reference = reference();
        for line in reference
            .lines()
            .filter(|l| l.trim_start().starts_with("- `"))
        {
            let (_, description) = line.split_once("): ").expect("a typed line");
            assert!(!description.trim().is_empty(), "undocumented: {line}");
        }
    }

    #[test]
    fn the_reference_names_every_variable_with_its_type() {
        let reference = reference();
        for expected in [
            "- `session_settings` (list of records): ",
            "  - `key` (text): ",
            "- `session_save_path` (text or nothing): ",
            "- `domains` (list of text): ",
            "- `fpm` (yes/no): ",
            "  - `stop_wait` (number): ",
        ] {
            assert!(
                reference.contains(expected),
                "missing {expected:?} in\n{reference}"
            );
        }
    }

    /// The README's section is the generated reference, word for word.
    #[test]
    fn the_readme_shows_the_generated_reference() {
        let readme = include_str!("../../../README.md");
        let body = reference();
        let body = body
            .split_once('\n')
            .map(|(_, rest)| rest.trim())
            .expect("a title line");
        let body = body.replace("\n## ", "\n#### ");
        assert!(
            readme.contains(&body),
            "README.md's template variables differ from `reconciler templates --out`; \
             paste this under its `### Template variables` heading:\n\n{body}"
        );
    }
}
