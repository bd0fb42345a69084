//! Writing free text into config files so that each file's parser reads
//! back exactly that text and nothing more.
//!
//! Validation already refuses control characters (a line break would end
//! the directive and start another: a worker command once smuggled a root
//! `[program:]` into supervisor's config). What remains are the characters
//! each syntax treats specially; every renderer that puts text a definition
//! chose into a file goes through one of these functions.

/// A worker command for supervisor's `command=` line.
///
/// supervisor reads the line with Python's configparser (where ` ;` and
/// ` #` start an inline comment), expands `%(name)s`, then splits the rest
/// like a POSIX shell (`shlex`) and runs it without a shell. The command
/// keeps its shell syntax by running under `/bin/sh -c`. A single command
/// is `exec`-ed, so that the worker is supervisor's child itself; a chain
/// (`a ; b`, pipes, redirections) runs under sh, whose process group
/// supervisor signals as a whole (`stopasgroup`). Inside the single-quoted
/// word, `'` is written `'"'"'`, and `;` and `#` are quoted on their own
/// (`'';''`), so that no whitespace ever precedes them on the line; `%` is
/// doubled.
pub fn supervisor_command(command: &str) -> String {
    let mut word = String::from("'");
    word.push_str(shell_prefix(command));
    for c in command.chars() {
        match c {
            '\'' => word.push_str("'\"'\"'"),
            ';' | '#' => {
                word.push_str("''");
                word.push(c);
                word.push_str("''");
            }
            '%' => word.push_str("%%"),
            c => word.push(c),
        }
    }
    word.push('\'');
    format!("/bin/sh -c {word}")
}

/// `exec ` for a command that is one simple command, else nothing.
pub fn shell_prefix(command: &str) -> &'static str {
    let chained = command.contains(['&', ';', '|', '<', '>', '(', ')', '`', '\n']);
    if chained { "" } else { "exec " }
}

/// A string value for php.ini (and php-fpm's pool files, which PHP reads
/// with the same parser).
///
/// In double quotes PHP expands `${NAME}` from the environment; single
/// quotes are raw. A `'` inside is written as `"'"` between two raw parts,
/// which PHP joins into one string.
pub fn php_ini_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_commands_have_no_whitespace_before_comment_characters() {
        let line = format!("command={}", supervisor_command("sleep 30 ; echo done # x"));
        assert_eq!(
            line,
            "command=/bin/sh -c 'sleep 30 '';'' echo done ''#'' x'"
        );
        assert_eq!(
            supervisor_command("php artisan queue:work --tries=3"),
            "/bin/sh -c 'exec php artisan queue:work --tries=3'"
        );
        for (i, c) in line.char_indices().skip(1) {
            if c == ';' || c == '#' {
                let before = line[..i].chars().next_back().unwrap_or(' ');
                assert!(!before.is_whitespace(), "{line}");
            }
        }
    }

    #[test]
    fn php_ini_strings_are_raw() {
        assert_eq!(php_ini_string("a${HOME}b"), "'a${HOME}b'");
        assert_eq!(php_ini_string("it's"), "'it'\"'\"'s'");
    }
}
