//! `.env` files as keys, for `reconciler env diff`: which keys a new file
//! adds, changes or removes, never what their values are.

use std::collections::BTreeMap;

/// The `KEY=value` assignments of a dotenv file, as dotenv readers see
/// them (`dotenvy`, the format Laravel's phpdotenv shares): quotes and
/// escapes are read, so `KEY="a"` and `KEY=a` are the same value; `export`
/// is allowed; comments, blank lines and lines that are not assignments
/// are left out. A key assigned twice keeps its last value.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    // Line by line: a line dotenvy cannot read is left out, not the rest.
    text.lines()
        .filter_map(|line| {
            dotenvy::from_read_iter(line.as_bytes())
                .next()
                .and_then(Result::ok)
        })
        .collect()
}

/// A key's change from one file to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// The key is only in the new file.
    Added,
    /// The key is in both, with different values.
    Changed,
    /// The key is only in the old file.
    Removed,
}

impl KeyChange {
    /// The mark a diff line starts with: `+`, `~` or `-`.
    pub fn sign(self) -> char {
        match self {
            KeyChange::Added => '+',
            KeyChange::Changed => '~',
            KeyChange::Removed => '-',
        }
    }
}

/// The keys that differ from `old` to `new`, in key order.
pub fn diff(old: &str, new: &str) -> Vec<(KeyChange, String)> {
    let (old, new) = (parse(old), parse(new));
    let mut changes = Vec::new();
    for (key, value) in &new {
        match old.get(key) {
            None => changes.push((KeyChange::Added, key.clone())),
            Some(before) if before != value => changes.push((KeyChange::Changed, key.clone())),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        changes.push((KeyChange::Removed, key.clone()));
    }
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_added_changed_and_removed_without_values() {
        let old = "# app\nAPP_KEY=base64:old\nDB_PASSWORD=hunter2\nexport MAIL=a\nKEEP=same\n";
        let new = "APP_KEY=base64:new\nKEEP=same\nREDIS_HOST=redis\nnot an assignment\n";
        assert_eq!(
            diff(old, new),
            [
                (KeyChange::Changed, "APP_KEY".to_owned()),
                (KeyChange::Removed, "DB_PASSWORD".to_owned()),
                (KeyChange::Removed, "MAIL".to_owned()),
                (KeyChange::Added, "REDIS_HOST".to_owned()),
            ]
        );
        assert!(diff(new, new).is_empty());
    }

    #[test]
    fn a_value_written_another_way_is_not_a_change() {
        let old = "APP_NAME=\"My Shop\"\nDEBUG=false\nURL='https://x'\n";
        let new = "APP_NAME='My Shop'\nDEBUG=\"false\"\nURL=https://x\n";
        assert!(diff(old, new).is_empty(), "{:?}", diff(old, new));
        assert_eq!(
            diff(old, "APP_NAME=\"My Shop \"\nDEBUG=false\nURL=https://x\n"),
            [(KeyChange::Changed, "APP_NAME".to_owned())]
        );
    }

    #[test]
    fn comments_and_the_last_assignment() {
        let keys = parse("#A=1\n  B = 2 \nB=3\n=4\n");
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            [("B".to_owned(), "3".to_owned())]
        );
    }
}
