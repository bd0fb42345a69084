//! Text from servers, made safe to print on a terminal.
//!
//! What an app writes (log lines, file names, a command's output) may hold
//! terminal control sequences: an escape code can clear the operator's
//! screen, retitle the window, or hide a line. Everything reconciler
//! prints that came from a server goes through `visible` first (unless a
//! command's `--raw` asks for the bytes as they are).

use std::borrow::Cow;

/// `text` with every control character but newline and tab made visible:
/// `ESC` becomes `\u{1b}`, a carriage return `\r`. Text without any is
/// returned as it is.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `visible`, and a newline too: one line of output for one value.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains('\n') {
        return visible(text);
    }
    Cow::Owned(visible(text).replace('\n', "\\n"))
}

fn is_hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_codes_are_shown_never_sent() {
        let hostile = "ok\x1b[2J\x1b]0;pwned\x07 done\r\nnext\tline\u{9b}31m";
        let shown = visible(hostile);
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{shown:?}"
        );
        assert_eq!(
            shown,
            "ok\\u{1b}[2J\\u{1b}]0;pwned\\u{7} done\\r\nnext\tline\\u{9b}31m"
        );
        assert!(matches!(visible("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb\x1b"), "a\\nb\\u{1b}");
    }
}
