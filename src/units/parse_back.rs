//! Models of how the daemons read the files reconciler renders, for tests:
//! supervisor's configparser, `%` expansion and `shlex`, and PHP's ini
//! reader. They are checked against the real parsers on the test fleet
//! (tests/fleet_security.rs), and used here to check, for any string, that
//! a rendered file reads back exactly as meant.

use std::collections::BTreeMap;

/// Sections of an INI-like file as supervisor reads it: each section's
/// options, with inline comments (` ;`, ` #`) removed.
pub fn supervisor_sections(
    text: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            return Err(format!("a continuation line: {line:?}"));
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once(['=', ':'])
            .ok_or_else(|| format!("not an option: {line:?}"))?;
        let section = current.as_ref().ok_or("an option before any section")?;
        let mut value = value.to_owned();
        // configparser: a prefix counts as a comment after whitespace only.
        let chars: Vec<char> = value.chars().collect();
        if let Some(cut) = (1..chars.len())
            .find(|&i| matches!(chars[i], ';' | '#') && chars[i - 1].is_whitespace())
        {
            value = chars[..cut].iter().collect();
        }
        sections
            .get_mut(section)
            .map(|options| options.insert(key.trim().to_lowercase(), value.trim().to_owned()));
    }
    Ok(sections)
}

/// supervisor's `%(name)s` expansion of a value that must use none.
pub fn supervisor_expand(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => return Err(format!("an expansion `%{other:?}`")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Python's `shlex.split` in POSIX mode.
pub fn shlex_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("no escaped character".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("no escaped character".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

/// Directives of a php.ini file as PHP reads them (the subset reconciler
/// writes: `key = value`, values raw-quoted, double-quoted or bare,
/// adjacent strings joined, `;` comments).
pub fn php_ini(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut directives = BTreeMap::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('[') {
            continue;
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| format!("not a directive: {line:?}"))?;
        let mut out = String::new();
        let mut chars = value.trim().chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err(format!("unclosed ' in {line:?}")),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('$') if chars.peek() == Some(&'{') => {
                            return Err(format!("an expansion in {line:?}"));
                        }
                        Some(c) => out.push(c),
                        None => return Err(format!("unclosed \" in {line:?}")),
                    }
                },
                ';' => break,
                c if c.is_whitespace() => {}
                c => out.push(c),
            }
        }
        directives.insert(key.trim().to_owned(), out);
    }
    Ok(directives)
}
