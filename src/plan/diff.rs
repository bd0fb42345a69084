//! Unified diffs of file content, through `similar`.

use similar::TextDiff;

/// A unified diff of `old` to `new` with three lines of context, headed by
/// the file's path; empty when they are equal.
pub fn unified(path: &str, old: &str, new: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(path, path)
        .missing_newline_hint(true)
        .to_string()
}
