//! Values in definitions that have a syntax of their own: PHP versions,
//! durations (`90s`, `15m`, `1h`), cron schedules with seconds and IANA
//! timezones, and php.ini values.
//!
//! Like the names, these deserialize whatever text they are given and keep
//! it, together with the parsed value when it parses, so that validation can
//! report every bad value in a file at once with its position.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A scalar written as a string or a number in YAML: `8.2` and `"8.2"` mean
/// the same PHP version, `90` and `"90s"` the same duration.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::String(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A PHP version such as `8.2`: major and minor only, as Debian's packages
/// and paths (`/etc/php/8.2`) name them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhpVersion(String);

impl PhpVersion {
    /// Wraps `version` as is; `is_valid` says whether it is one.
    pub fn new(version: impl Into<String>) -> Self {
        Self(version.into())
    }

    /// The version as written (`8.2`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `major.minor`, each one or two digits.
    pub fn is_valid(&self) -> bool {
        let mut parts = self.0.split('.');
        let number = |p: Option<&str>| {
            p.is_some_and(|p| {
                !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit())
            })
        };
        number(parts.next()) && number(parts.next()) && parts.next().is_none()
    }
}

impl fmt::Display for PhpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhpVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(Scalar::deserialize(deserializer)?.into_text()))
    }
}

impl Serialize for PhpVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl JsonSchema for PhpVersion {
    fn schema_name() -> Cow<'static, str> {
        "PhpVersion".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A PHP version, major.minor, such as \"8.2\" (quote it: YAML reads 8.10 as 8.1).",
            "type": ["string", "number"],
            "pattern": "^[0-9]{1,2}\\.[0-9]{1,2}$"
        })
    }
}

/// Text from a definition together with what it parses to, if it does.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    text: String,
    value: Result<T, String>,
}

impl<T> Parsed<T> {
    /// The text as written in the definitions.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why the text does not parse, if it does not.
    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().err().map(String::as_str)
    }

    /// The parsed value; `None` only for definitions that failed validation.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().ok()
    }
}

impl<T> PartialEq for Parsed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// How a kind of value is read from its text.
pub trait Syntax: Sized {
    /// The value `text` stands for, or why it stands for none (a message
    /// for a diagnostic).
    fn parse(text: &str) -> Result<Self, String>;
    /// The JSON schema of the text, for the definitions' schemas.
    fn schema() -> Schema;
    /// The schema's name for this kind of value (`Duration`).
    const NAME: &'static str;
    /// How to write a valid value, for messages.
    const HINT: Option<&'static str> = None;
}

impl<T: Syntax> Parsed<T> {
    /// `text` and what it parses to, by `T`'s syntax.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let value = T::parse(&text);
        Self { text, value }
    }
}

impl<'de, T: Syntax> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::new(Scalar::deserialize(deserializer)?.into_text()))
    }
}

impl<T> Serialize for Parsed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<T: Syntax> JsonSchema for Parsed<T> {
    fn schema_name() -> Cow<'static, str> {
        T::NAME.into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        T::schema()
    }
}

/// A length of time written as `90s`, `15m`, `1h` or `1h30m`; a bare number
/// is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Syntax for HumanDuration {
    const NAME: &'static str = "Duration";
    const HINT: Option<&'static str> = Some("such as 90s, 15m, 1h or 1h30m");

    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<u64>() {
            return Ok(Self(Duration::from_secs(seconds)));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut any = false;
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(format!("unknown unit `{c}`")),
            };
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("`{c}` needs a number before it"))?;
            total = n
                .checked_mul(unit)
                .and_then(|s| total.checked_add(s))
                .ok_or("too long")?;
            digits.clear();
            any = true;
        }
        if !digits.is_empty() {
            return Err(format!("`{digits}` needs a unit"));
        }
        if !any {
            return Err("empty".into());
        }
        Ok(Self(Duration::from_secs(total)))
    }

    fn schema() -> Schema {
        json_schema!({
            "description": "A duration: a number of seconds, or a number with a unit s, m, h or d, such as 90s, 15m, 1h or 1h30m.",
            "type": ["string", "integer"],
            "pattern": "^([0-9]+|([0-9]+[smhd])+)$"
        })
    }
}

/// A size in bytes written as `512M`, `1G`, `64MB`, `100KiB` or a bare
/// number of bytes; K, M, G and T are powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Syntax for ByteSize {
    const NAME: &'static str = "ByteSize";
    const HINT: Option<&'static str> = Some("such as 512M, 1G or 64MiB");

    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| "expected a number, then K, M, G or T".to_owned())?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "K" | "KB" | "KiB" => 10,
            "M" | "MB" | "MiB" => 20,
            "G" | "GB" | "GiB" => 30,
            "T" | "TB" | "TiB" => 40,
            other => return Err(format!("unknown unit `{other}`")),
        };
        number
            .checked_mul(1u64 << shift)
            .map(Self)
            .ok_or_else(|| "too large".to_owned())
    }

    fn schema() -> Schema {
        json_schema!({
            "description": "A size: bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1G.",
            "type": ["string", "integer"],
            "pattern": "^[0-9]+ ?([KMGT](i?B)?|B)?$"
        })
    }
}

/// A cron schedule with a seconds field first, as the `cron` crate reads it:
/// `sec min hour day-of-month month day-of-week [year]`.
#[derive(Debug, Clone)]
pub struct CronSchedule(pub cron::Schedule);

impl Syntax for CronSchedule {
    const NAME: &'static str = "CronSchedule";
    const HINT: Option<&'static str> = Some(
        "six fields with seconds first: sec min hour day-of-month month day-of-week, \
         such as \"0 0 3 * * *\"",
    );

    fn parse(text: &str) -> Result<Self, String> {
        cron::Schedule::from_str(text).map(Self).map_err(|e| {
            let fields = text.split_whitespace().count();
            if !(6..=7).contains(&fields) {
                return format!(
                    "it has {fields} fields; a schedule has 6 (seconds first) or 7 (a year last)"
                );
            }
            // The expression, a caret under the place, and a reason when
            // the crate has one.
            let message = e.to_string();
            let mut lines = message.lines();
            let (_, caret, reason) = (lines.next(), lines.next(), lines.next());
            match (
                reason.map(str::trim).filter(|r| !r.is_empty()),
                caret.and_then(|l| l.find('^')),
            ) {
                (Some(reason), _) => reason.to_owned(),
                (None, Some(column)) => format!("the syntax is wrong at column {}", column + 1),
                (None, None) => message.trim().to_owned(),
            }
        })
    }

    fn schema() -> Schema {
        json_schema!({
            "description": "A cron schedule with seconds: `sec min hour day-of-month month day-of-week`, such as \"0 0 3 * * *\" for 03:00 every day.",
            "type": "string"
        })
    }
}

/// An IANA timezone such as `Europe/Amsterdam` or `UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(pub chrono_tz::Tz);

impl Syntax for Timezone {
    const NAME: &'static str = "Timezone";

    fn parse(text: &str) -> Result<Self, String> {
        chrono_tz::Tz::from_str(text)
            .map(Self)
            .map_err(|_| "not an IANA timezone".to_owned())
    }

    fn schema() -> Schema {
        json_schema!({
            "description": "An IANA timezone, such as Europe/Amsterdam or UTC.",
            "type": "string"
        })
    }
}

/// A php.ini value: a string, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IniValue {
    /// A YAML boolean, written to php.ini as `On` or `Off`.
    Bool(bool),
    /// A YAML integer, written as is.
    Integer(i64),
    /// A YAML number with a fraction, written as Rust displays it (`0.5`).
    Float(f64),
    /// A YAML string, such as `128M`: single-quoted in php.ini, so PHP
    /// expands nothing in it; refused when it holds a control character.
    String(String),
}

impl fmt::Display for IniValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IniValue::Bool(true) => f.write_str("On"),
            IniValue::Bool(false) => f.write_str("Off"),
            IniValue::Integer(i) => write!(f, "{i}"),
            IniValue::Float(x) => write!(f, "{x}"),
            IniValue::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Result<u64, String> {
        HumanDuration::parse(text).map(|d| d.0.as_secs())
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(seconds("90s"), Ok(90));
        assert_eq!(seconds("15m"), Ok(900));
        assert_eq!(seconds("1h"), Ok(3600));
        assert_eq!(seconds("1h30m"), Ok(5400));
        assert_eq!(seconds("45"), Ok(45));
    }

    #[test]
    fn durations_without_units_or_numbers_are_refused() {
        assert_eq!(seconds("1x"), Err("unknown unit `x`".into()));
        assert_eq!(seconds("h"), Err("`h` needs a number before it".into()));
        assert_eq!(seconds("1h30"), Err("`30` needs a unit".into()));
        assert_eq!(seconds(""), Err("empty".into()));
    }

    #[test]
    fn php_versions_are_major_dot_minor() {
        assert!(PhpVersion::new("8.2").is_valid());
        assert!(PhpVersion::new("7.4").is_valid());
        for bad in ["8", "8.2.1", "eight", "8.", ".2", "8.2;"] {
            assert!(!PhpVersion::new(bad).is_valid(), "{bad}");
        }
    }

    #[test]
    fn cron_schedules_need_the_seconds_field() {
        assert!(Parsed::<CronSchedule>::new("0 0 3 * * *").error().is_none());
        assert_eq!(
            Parsed::<CronSchedule>::new("0 3 * * *").error(),
            Some("it has 5 fields; a schedule has 6 (seconds first) or 7 (a year last)")
        );
        assert_eq!(
            Parsed::<CronSchedule>::new("0 0 3 ? * MON-").error(),
            Some("the syntax is wrong at column 14")
        );
        assert_eq!(
            Parsed::<CronSchedule>::new("0 0 25 * * *").error(),
            Some("Hours must be less than 23. ('25' specified.)")
        );
    }

    #[test]
    fn timezones_are_iana_names() {
        assert!(
            Parsed::<Timezone>::new("Europe/Amsterdam")
                .error()
                .is_none()
        );
        assert!(Parsed::<Timezone>::new("Mars/Olympus").error().is_some());
    }
}
