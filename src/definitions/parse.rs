//! One YAML document to one typed value, with every problem it has.
//!
//! serde stops at the first unknown key; operators want them all at once.
//! So a document goes through stages: the text is indexed (positions,
//! repeated keys, depth and size limits), parsed to a YAML value, walked
//! against the JSON Schema the types publish (each key the schema does not
//! know is reported and dropped), and only then deserialized into its type,
//! with the path of a type error mapped back to its line and column.

use std::path::Path;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::diagnostic::{Diagnostic, closest, misspelling_hint};
use super::positions::{MAX_DEPTH, MAX_NODES, Refusal, SourceMap};
use super::{Document, Position};

/// Parses one file, pushing its problems; `None` when it has any that
/// leave no typed value.
pub(super) fn document<T: DeserializeOwned + JsonSchema>(
    file: &Path,
    bytes: &[u8],
    problems: &mut Vec<Diagnostic>,
) -> Option<Document<T>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        problems.push(Diagnostic::new(file, Position::START, "not UTF-8 text"));
        return None;
    };
    // Editors on Windows may start a file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let map = match SourceMap::index(text) {
        Ok(map) => map,
        Err(Refusal::TooDeep(at)) => {
            problems.push(Diagnostic::new(
                file,
                at,
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
            return None;
        }
        Err(Refusal::TooManyNodes(at)) => {
            problems.push(Diagnostic::new(
                file,
                at,
                format!("more than {MAX_NODES} values in one file"),
            ));
            return None;
        }
    };
    if !map.duplicates.is_empty() {
        for (path, at, first) in &map.duplicates {
            let key = path.rsplit('.').next().unwrap_or(path);
            problems.push(Diagnostic::new(
                file,
                *at,
                format!(
                    "`{key}` is given twice; first at line {}, column {}",
                    first.line, first.column
                ),
            ));
        }
        return None;
    }
    let mut value: Yaml = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            problems.push(Diagnostic::from_yaml(file, &error));
            return None;
        }
    };
    if value.is_null() {
        // An empty file: let the typed stage say which fields are missing.
        value = Yaml::Mapping(Default::default());
    }

    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let mut unknown = Vec::new();
    drop_unknown_keys(&mut value, &schema, &schema, String::new(), &mut unknown);
    // Keys the misspelled ones were probably meant to be: their absence
    // is not worth a second message.
    let mut meant: Vec<String> = Vec::new();
    for (path, known) in &unknown {
        let key = path.rsplit('.').next().unwrap_or(path);
        let mut diagnostic = Diagnostic::new(file, map.key(path), format!("unknown key `{key}`"));
        diagnostic.hint = match closest(key, known.iter().map(String::as_str)) {
            Some(best) => {
                meant.push(format!("missing field `{best}`"));
                Some(format!("did you mean `{best}`?"))
            }
            None if !known.is_empty() => Some(format!(
                "expected {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => None,
        };
        problems.push(diagnostic);
    }

    match serde_path_to_error::deserialize::<_, T>(value) {
        // A file with unknown keys is not checked further: what it means
        // is unclear until they are fixed.
        Ok(_) if !unknown.is_empty() => None,
        Ok(value) => Some(Document {
            file: file.to_owned(),
            map,
            value,
        }),
        Err(error) => {
            if meant
                .iter()
                .any(|m| error.inner().to_string().contains(m.as_str()))
            {
                return None;
            }
            let path = error.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = error.into_inner().to_string();
            let message = if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            };
            let hint = misspelling_hint(&message);
            let mut diagnostic = Diagnostic::new(file, map.value(&path), message);
            diagnostic.hint = hint;
            problems.push(diagnostic);
            None
        }
    }
}

/// Removes every mapping key that `schema` does not allow, recording its
/// path and the keys that were allowed there.
fn drop_unknown_keys(
    value: &mut Yaml,
    schema: &Json,
    root: &Json,
    path: String,
    unknown: &mut Vec<(String, Vec<String>)>,
) {
    let schema = resolve(schema, root);
    match value {
        Yaml::Mapping(mapping) => {
            let properties = schema.get("properties").and_then(Json::as_object);
            let additional = schema.get("additionalProperties");
            let strict = additional == Some(&Json::Bool(false));
            let keys: Vec<Yaml> = mapping.keys().cloned().collect();
            for key in keys {
                let name = match &key {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match properties.and_then(|p| p.get(&name)) {
                    Some(child_schema) => {
                        if let Some(v) = mapping.get_mut(&key) {
                            drop_unknown_keys(v, child_schema, root, child, unknown);
                        }
                    }
                    None if strict => {
                        let known = properties
                            .map(|p| p.keys().cloned().collect())
                            .unwrap_or_default();
                        unknown.push((child, known));
                        mapping.remove(&key);
                    }
                    None => {
                        if let (Some(child_schema), Some(v)) = (additional, mapping.get_mut(&key))
                            && child_schema.is_object()
                        {
                            drop_unknown_keys(v, child_schema, root, child, unknown);
                        }
                    }
                }
            }
        }
        Yaml::Sequence(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    drop_unknown_keys(item, item_schema, root, format!("{path}[{i}]"), unknown);
                }
            }
        }
        Yaml::Tagged(tagged) => drop_unknown_keys(&mut tagged.value, schema, root, path, unknown),
        _ => {}
    }
}

/// Follows `$ref` and picks the object branch of an `anyOf`/`oneOf` (the
/// shape schemars gives an `Option<Struct>`).
fn resolve<'a>(schema: &'a Json, root: &'a Json) -> &'a Json {
    let mut schema = schema;
    for _ in 0..8 {
        if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => schema = target,
                None => return schema,
            }
            continue;
        }
        let branches = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Json::as_array);
        match branches.and_then(|b| {
            b.iter()
                .find(|branch| branch.get("type") != Some(&Json::String("null".into())))
        }) {
            Some(branch) => schema = branch,
            None => return schema,
        }
    }
    schema
}
