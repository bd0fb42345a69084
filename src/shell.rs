//! Building shell scripts from values that came from definitions.
//!
//! Every value that reaches a remote shell goes through `quote`, even the
//! ones validation already restricts (names), so that no definition value can
//! ever be read as shell syntax.

/// Quotes `value` as one POSIX shell word: inside single quotes, with each
/// `'` written as `'\''`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each value and joins them with spaces.
pub fn quote_all<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh` makes of a quoted value: it must be the value itself.
    fn through_sh(value: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(value)))
            .output()
            .expect("run sh");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn hostile_values_stay_one_literal_word() {
        for value in [
            "plain",
            "x;rm -rf /",
            "$(touch /tmp/pwned)",
            "`id`",
            "it's",
            "'",
            "a\nb",
            "\"$HOME\"",
            "",
            "\\",
        ] {
            assert_eq!(through_sh(value), value);
        }
    }
}
