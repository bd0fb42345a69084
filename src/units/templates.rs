//! The unit templates: embedded defaults, overridable per definitions repo.
//!
//! A definitions repository may put a file with the same name under its
//! `templates/` directory to replace an embedded template, for example to
//! add nginx directives. Templates render plain text: HTML escaping is off,
//! and every value they receive is already escaped for its file by the
//! renderers (`escape`) or restricted by validation (names, numbers).
//!
//! Overrides come from the repository, so they are checked like any
//! definition: a template that does not parse is a diagnostic with its file
//! and line. A template may include another by name (`{{> cron.hbs}}`), but
//! the includes are checked before anything renders: no cycles, at most
//! `MAX_INCLUDE_DEPTH` deep, and no decorators or inline partials (the
//! template engine has no recursion limit of its own, and a loop would
//! overflow the stack).

use std::collections::BTreeMap;
use std::path::PathBuf;

use handlebars::Handlebars;
use handlebars::template::{Template, TemplateElement};
use serde::Serialize;

use crate::definitions::{Diagnostic, Position, TemplateOverride};

/// The embedded templates, by the file name an override would have.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("php.ini.hbs", include_str!("templates/php.ini.hbs")),
    (
        "fpm-global.conf.hbs",
        include_str!("templates/fpm-global.conf.hbs"),
    ),
    (
        "fpm-pool.conf.hbs",
        include_str!("templates/fpm-pool.conf.hbs"),
    ),
    (
        "nginx-vhost.conf.hbs",
        include_str!("templates/nginx-vhost.conf.hbs"),
    ),
    (
        "supervisor.conf.hbs",
        include_str!("templates/supervisor.conf.hbs"),
    ),
    ("cron.hbs", include_str!("templates/cron.hbs")),
    ("logrotate.hbs", include_str!("templates/logrotate.hbs")),
];

/// How deep templates may include one another.
pub const MAX_INCLUDE_DEPTH: usize = 4;

/// A template that failed to render, for an app or cluster.
#[derive(Debug, thiserror::Error)]
#[error("template `{name}` does not render: {reason}")]
pub struct TemplateError {
    /// The template's name (`fpm-pool.conf.hbs`).
    pub name: String,
    /// The engine's message.
    pub reason: String,
    /// Where in the template, when the engine knows.
    pub position: Option<Position>,
}

/// The registry of unit templates.
#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
    /// Where each override came from, for messages.
    files: BTreeMap<String, PathBuf>,
}

impl Templates {
    /// The embedded templates only.
    pub fn embedded() -> Self {
        match Self::new(&BTreeMap::new()) {
            Ok(templates) => templates,
            // The embedded templates are tested to parse.
            Err(problems) => panic!("embedded templates do not parse: {problems:?}"),
        }
    }

    /// The embedded templates, each replaced by its override; every problem
    /// with the overrides as diagnostics.
    pub fn new(overrides: &BTreeMap<String, TemplateOverride>) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        for (name, template) in overrides {
            if !EMBEDDED.iter().any(|(embedded, _)| embedded == name) {
                let names: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
                problems.push(
                    Diagnostic::new(
                        &template.file,
                        Position::START,
                        format!("no embedded template `{name}` to replace"),
                    )
                    .with_hint(format!("templates are {}", names.join(", "))),
                );
            }
        }
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        let mut compiled = BTreeMap::new();
        let mut files = BTreeMap::new();
        for (name, embedded) in EMBEDDED {
            let (text, file) = match overrides.get(*name) {
                Some(o) => (o.text.as_str(), Some(o.file.clone())),
                None => (*embedded, None),
            };
            let diagnostic_file = file.clone().unwrap_or_else(|| PathBuf::from(name));
            match Template::compile(text) {
                Ok(template) => {
                    compiled.insert(name.to_string(), (template, diagnostic_file));
                }
                Err(error) => {
                    let position = error
                        .pos()
                        .map_or(Position::START, |(line, column)| Position { line, column });
                    problems.push(Diagnostic::new(
                        diagnostic_file,
                        position,
                        format!("the template does not parse: {}", error.reason()),
                    ));
                    continue;
                }
            }
            if let Some(file) = file {
                files.insert(name.to_string(), file);
            }
            if let Err(error) = registry.register_template_string(name, text) {
                // Compiled above, so this does not happen; keep the message.
                problems.push(Diagnostic::new(
                    files
                        .get(*name)
                        .cloned()
                        .unwrap_or_else(|| PathBuf::from(name)),
                    Position::START,
                    format!("the template does not parse: {}", error.reason()),
                ));
            }
        }
        problems.extend(check_includes(&compiled));
        if problems.is_empty() {
            Ok(Self { registry, files })
        } else {
            Err(problems)
        }
    }

    /// Renders the template `name` (an override, else the embedded one)
    /// with `data` as its context.
    ///
    /// # Errors
    ///
    /// A `TemplateError` when there is no such template or it does not
    /// render with `data`.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<String, TemplateError> {
        self.registry
            .render(name, data)
            .map_err(|error| TemplateError {
                name: error
                    .template_name
                    .clone()
                    .unwrap_or_else(|| name.to_owned()),
                reason: error.reason().to_string(),
                position: error.line_no.map(|line| Position {
                    line,
                    column: error.column_no.unwrap_or(1),
                }),
            })
    }

    /// A render error as a diagnostic at the template's file and line.
    pub fn diagnostic(&self, error: &TemplateError, context: &str) -> Diagnostic {
        let file = self
            .files
            .get(&error.name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(format!("(embedded) {}", error.name)));
        Diagnostic::new(
            file,
            error.position.unwrap_or(Position::START),
            format!("the template does not render {context}: {}", error.reason),
        )
    }
}

/// Checks what each template includes: only other templates, by name, no
/// cycles, not too deep, no decorators or inline partials.
fn check_includes(compiled: &BTreeMap<String, (Template, PathBuf)>) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<&str, Vec<(String, Position)>> = BTreeMap::new();
    for (name, (template, file)) in compiled {
        let mut includes = Vec::new();
        collect_includes(template, &mut includes, &mut |position, message| {
            problems.push(Diagnostic::new(file, position, message));
        });
        edges.insert(name, includes);
    }
    for (name, (_, file)) in compiled {
        let mut path = vec![name.clone()];
        if let Some(message) = walk(name, &edges, &mut path) {
            problems.push(Diagnostic::new(file, Position::START, message));
        }
    }
    problems
}

fn walk(
    name: &str,
    edges: &BTreeMap<&str, Vec<(String, Position)>>,
    path: &mut Vec<String>,
) -> Option<String> {
    for (child, _) in edges.get(name).map(Vec::as_slice).unwrap_or_default() {
        if path.contains(child) {
            path.push(child.clone());
            return Some(format!(
                "templates include each other in a loop: {}",
                path.join(" > ")
            ));
        }
        if path.len() > MAX_INCLUDE_DEPTH {
            return Some(format!(
                "templates include each other more than {MAX_INCLUDE_DEPTH} deep: {} > {child}",
                path.join(" > ")
            ));
        }
        if !edges.contains_key(child.as_str()) {
            return Some(format!(
                "`{name}` includes `{child}`, which is not a template"
            ));
        }
        path.push(child.clone());
        if let Some(problem) = walk(child, edges, path) {
            return Some(problem);
        }
        path.pop();
    }
    None
}

fn collect_includes(
    template: &Template,
    includes: &mut Vec<(String, Position)>,
    refuse: &mut dyn FnMut(Position, String),
) {
    for (i, element) in template.elements.iter().enumerate() {
        let position = template
            .mapping
            .get(i)
            .map_or(Position::START, |m| Position {
                line: m.0,
                column: m.1,
            });
        match element {
            TemplateElement::PartialExpression(partial) | TemplateElement::PartialBlock(partial) => {
                let name = partial.name.as_name().map(str::to_owned);
                match name {
                    Some(name) if !name.starts_with('@') && partial.template.is_none() => {
                        includes.push((name, position));
                    }
                    _ => refuse(
                        position,
                        "only plain includes of another template by name (`{{> name.hbs}}`) are allowed".into(),
                    ),
                }
            }
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => refuse(
                position,
                "decorators and inline partials (`{{* ...}}`, `{{#* ...}}`) are not allowed in templates"
                    .into(),
            ),
            TemplateElement::HelperBlock(helper) => {
                for inner in [&helper.template, &helper.inverse].into_iter().flatten() {
                    collect_includes(inner, includes, refuse);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(files: &[(&str, &str)]) -> BTreeMap<String, TemplateOverride> {
        files
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    TemplateOverride {
                        file: PathBuf::from(format!("templates/{name}")),
                        text: text.to_string(),
                    },
                )
            })
            .collect()
    }

    fn problems(files: &[(&str, &str)]) -> Vec<String> {
        match Templates::new(&overrides(files)) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_embedded_templates_parse() {
        assert!(Templates::new(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn a_template_that_does_not_parse_names_its_file_and_line() {
        let found = problems(&[("cron.hbs", "line one\n{{#if x}}\nno end\n")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("templates/cron.hbs:"), "{found:?}");
        assert!(
            found[0].contains("the template does not parse"),
            "{found:?}"
        );
    }

    #[test]
    fn includes_that_loop_are_refused_before_rendering() {
        let found = problems(&[
            ("cron.hbs", "{{> php.ini.hbs}}"),
            ("php.ini.hbs", "{{> cron.hbs}}"),
        ]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("templates include each other in a loop")),
            "{found:?}"
        );
    }

    #[test]
    fn self_inclusion_and_inline_partials_are_refused() {
        let found = problems(&[("cron.hbs", "{{> cron.hbs}}")]);
        assert!(found.iter().any(|p| p.contains("loop")), "{found:?}");
        let found = problems(&[("cron.hbs", "{{#*inline \"x\"}}{{> x}}{{/inline}}{{> x}}")]);
        assert!(
            found
                .iter()
                .any(|p| p.contains("decorators and inline partials")),
            "{found:?}"
        );
    }

    #[test]
    fn the_pool_slow_log_threshold_is_the_shortest_request_validation_allows() {
        // php-fpm refuses a pool whose request_terminate_timeout is below
        // its request_slowlog_timeout: validation's floor must be this one.
        let pool = EMBEDDED
            .iter()
            .find(|(name, _)| *name == "fpm-pool.conf.hbs")
            .map(|(_, text)| *text)
            .expect("embedded pool template");
        let line = format!(
            "request_slowlog_timeout = {}s\n",
            crate::definitions::RequestLimits::MIN_DURATION
        );
        assert!(pool.contains(&line), "the pool template has no `{line}`");
    }

    #[test]
    fn a_plain_include_renders() {
        let templates = Templates::new(&overrides(&[("cron.hbs", "[{{> fpm-global.conf.hbs}}]")]))
            .expect("valid");
        let text = templates
            .render(
                "cron.hbs",
                &serde_json::json!({
                    "cluster": "c", "duration": 5, "status_socket": "/s", "status_script": "/p"
                }),
            )
            .expect("renders");
        assert!(text.contains("process_control_timeout = 5s"), "{text}");
    }

    #[test]
    fn an_unknown_override_name_is_a_problem() {
        let found = problems(&[("nginx.hbs", "x")]);
        assert_eq!(
            found,
            [
                "templates/nginx.hbs:1:1: no embedded template `nginx.hbs` to replace\n  hint: templates are php.ini.hbs, fpm-global.conf.hbs, fpm-pool.conf.hbs, nginx-vhost.conf.hbs, supervisor.conf.hbs, cron.hbs, logrotate.hbs"
            ]
        );
    }
}
