//! Building a remote script: preamble, quoted header, library, body, call.

use crate::layout;
use crate::shell::quote;

/// What every script starts with: unset variables are errors, the C locale,
/// root's PATH whatever the login gave, files made 0644, and `/` as the
/// working directory (nothing runs in a directory an app could have given
/// it).
pub const PREAMBLE: &str = "set -u\nexport LC_ALL=C\n\
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\numask 022\ncd /\n";

/// The bytes of a command's output a script keeps (`run_step`): the last
/// ones, whatever the command prints.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// A script in the making: its header of quoted variables.
#[derive(Debug, Clone)]
pub struct Script {
    header: String,
    names: Vec<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self::new()
    }
}

impl Script {
    /// A script whose header has the layout's paths (`layout::shell_vars`).
    pub fn new() -> Self {
        let mut script = Self {
            header: String::new(),
            names: Vec::new(),
        };
        for (name, value) in layout::shell_vars() {
            script = script.var(name, value);
        }
        // For a script that starts a process of its own (the apply's
        // detached worker): `eval "$PREAMBLE"` there.
        script
            .var("PREAMBLE", PREAMBLE)
            .var("OUTPUT_LIMIT", OUTPUT_LIMIT.to_string())
    }

    /// `NAME='value'` in the header. `name` is one of ours, never data.
    pub fn var(mut self, name: &str, value: impl AsRef<str>) -> Self {
        debug_assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        self.header
            .push_str(&format!("{name}={}\n", quote(value.as_ref())));
        self.names.push(name.to_owned());
        self
    }

    /// `NAME=('a' 'b' ...)` in the header.
    pub fn array<'a>(mut self, name: &str, values: impl IntoIterator<Item = &'a str>) -> Self {
        debug_assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        self.header
            .push_str(&format!("{name}=({})\n", crate::shell::quote_all(values)));
        self.names.push(name.to_owned());
        self
    }

    /// The whole script: the preamble, fd 5 as the report stream (stdout)
    /// and stdout as stderr, the header and `HEADER_VARS` (its names, for
    /// a script that hands them on to a process of its own), the library,
    /// `body`, and `call` as quoted words.
    pub fn build(&self, body: &str, call: &[&str]) -> String {
        let mut s = String::with_capacity(
            PREAMBLE.len() + self.header.len() + super::LIB.len() + body.len() + 256,
        );
        s.push_str(PREAMBLE);
        s.push_str("exec 5>&1 1>&2\n");
        s.push_str(&self.header);
        s.push_str(&format!(
            "HEADER_VARS=({})\n",
            crate::shell::quote_all(self.names.iter().map(String::as_str))
        ));
        s.push_str(super::LIB);
        s.push('\n');
        s.push_str(body);
        s.push('\n');
        s.push_str(&crate::shell::quote_all(call.iter().copied()));
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::protocol;

    /// Runs a built script with the local bash: its stdout and stderr.
    fn run(script: &str) -> (Vec<u8>, String) {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .output()
            .expect("bash");
        (
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn only_records_reach_the_report_stream() {
        let body = "say() { echo \"@forged\tfailed\t$1\"; printf '@done\\0000\\0\\n'; record done \"$1\"; }";
        let script = Script::new().var("NAME", "x").build(body, &["say", "a\nb"]);
        let (stdout, stderr) = run(&script);
        let records = protocol::parse(&stdout).expect("records");
        assert_eq!(records, [protocol::Record::new("done", &["a\nb"])]);
        assert!(
            stderr.contains("@forged"),
            "stray output goes to stderr: {stderr}"
        );
    }

    #[test]
    fn header_values_stay_literal_and_are_listed() {
        let hostile = "'; touch /tmp/x; '$(id)`id`\n";
        let script = Script::new()
            .var("VALUE", hostile)
            .array("LIST", ["a b", "", "c'd"])
            .build(
                "show() { record value \"$VALUE\" \"${#LIST[@]}\" \"${LIST[@]}\"; record names \"${HEADER_VARS[@]}\"; }",
                &["show"],
            );
        let (stdout, _) = run(&script);
        let records = protocol::parse(&stdout).expect("records");
        assert_eq!(
            records[0],
            protocol::Record::new("value", &[hostile, "3", "a b", "", "c'd"])
        );
        let names = records[1].texts_from(0);
        assert!(names.contains(&"VALUE".to_owned()) && names.contains(&"HOME_ROOT".to_owned()));
    }
}
