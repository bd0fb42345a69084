//! The unit templates: embedded defaults, overridable per definitions repo.
//!
//! A definitions repository may put a file with the same name under its
//! `templates/` directory to replace an embedded template, for example to add
//! nginx directives. Templates render plain text: HTML escaping is off, and
//! every value they receive is already safe for its file (names are
//! validated, commands quoted by the renderers).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;

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
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template override `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("template `{name}` does not parse")]
    Parse {
        name: String,
        #[source]
        source: Box<handlebars::TemplateError>,
    },
    #[error("template `{name}` does not render")]
    Render {
        name: String,
        #[source]
        source: Box<handlebars::RenderError>,
    },
}

/// The registry of unit templates.
#[derive(Debug)]
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Templates {
    /// The embedded templates only.
    pub fn embedded() -> Result<Self, TemplateError> {
        Self::with_overrides(None)
    }

    /// The embedded templates, each replaced by `<definitions>/templates/<name>`
    /// when that file exists.
    pub fn load(definitions: &Path) -> Result<Self, TemplateError> {
        Self::with_overrides(Some(&definitions.join("templates")))
    }

    fn with_overrides(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, embedded) in EMBEDDED {
            let text = match dir.map(|d| d.join(name)) {
                Some(path) if path.is_file() => fs::read_to_string(&path)
                    .map_err(|source| TemplateError::Read { path, source })?,
                _ => (*embedded).to_owned(),
            };
            registry
                .register_template_string(name, text)
                .map_err(|source| TemplateError::Parse {
                    name: (*name).to_owned(),
                    source: Box::new(source),
                })?;
        }
        Ok(Self { registry })
    }

    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<String, TemplateError> {
        self.registry
            .render(name, data)
            .map_err(|source| TemplateError::Render {
                name: name.to_owned(),
                source: Box::new(source),
            })
    }
}
