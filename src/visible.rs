//! Text an agent or an upstream chose, shown to a person as what it is.
//!
//! A tool name, an upstream's name for itself, a principal, a policy's
//! reasons (which quote the agent's arguments) and the arguments themselves
//! reach approvers: on a terminal (`approvals list|show`, `tools list|diff`,
//! the firewall's notice when a call is held), in the console and in Slack.
//! Such text can carry terminal control sequences (erase the line, move the
//! cursor, set the title, write the clipboard with OSC 52) or bidirectional
//! overrides that display characters in another order than they have
//! ("Trojan Source"): either can make a call look like another one. An
//! approver must see what they approve, so every such character is shown
//! as an escape (`\u{202e}`) instead.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters that change how what follows them is displayed: C0 and C1
/// controls, DEL, and the bidirectional marks, embeddings, overrides and
/// isolates.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Appends `c` as the escape it is shown as: `\u{1b}`.
pub fn push_escaped(out: &mut String, c: char) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// `text` for a terminal line: every [`is_hidden`] character escaped, tabs
/// and newlines too (one record stays one line).
pub fn text(text: &str) -> Cow<'_, str> {
    escape_where(text, is_hidden, push_escaped)
}

/// Whether `c` is hidden in text laid out with its own line breaks and tabs
/// (a web page's `<pre>`, a Slack message): [`is_hidden`] but for those two.
pub fn is_hidden_in_layout(c: char) -> bool {
    c != '\n' && c != '\t' && is_hidden(c)
}

/// `text` for a message that keeps its line breaks and tabs (a Teams card):
/// every [`is_hidden_in_layout`] character escaped.
pub fn laid_out(text: &str) -> Cow<'_, str> {
    escape_where(text, is_hidden_in_layout, push_escaped)
}

/// `text` for a markup that keeps line breaks (HTML, Slack's mrkdwn): each
/// character `entities` names replaced by its entity, and every
/// [`is_hidden_in_layout`] character escaped.
pub fn markup(text: &str, entities: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match entities.iter().find(|(e, _)| *e == c) {
            Some((_, entity)) => out.push_str(entity),
            None if is_hidden_in_layout(c) => push_escaped(&mut out, c),
            None => out.push(c),
        }
    }
    out
}

/// `text` with every `hidden` character written by `escape`.
fn escape_where(
    text: &str,
    hidden: fn(char) -> bool,
    escape: fn(&mut String, char),
) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Serialized JSON for a terminal: [`is_hidden`] characters inside its
/// strings become JSON escapes (`\u001b`), so the output is still JSON and
/// parses to the same value. Newlines outside strings (pretty printing) are
/// kept; serde_json never writes one inside a string.
pub fn json(serialized: &str) -> Cow<'_, str> {
    escape_where(
        serialized,
        |c| c != '\n' && is_hidden(c),
        |out, c| {
            let _ = write!(out, "\\u{:04x}", c as u32);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_shown_as_escapes() {
        assert_eq!(text("read_file"), "read_file");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        assert_eq!(
            text("ok\r\u{1b}[2Kapproved\u{7}"),
            "ok\\u{d}\\u{1b}[2Kapproved\\u{7}"
        );
        assert_eq!(text("a\u{202e}cod.exe"), "a\\u{202e}cod.exe");
        assert_eq!(text("C1 \u{9b}31m"), "C1 \\u{9b}31m");
        assert_eq!(text("two\nlines\tx"), "two\\u{a}lines\\u{9}x");
        // Other non-ASCII text is left alone.
        assert_eq!(text("café 東京"), "café 東京");
    }

    #[test]
    fn json_stays_json_with_the_same_value() {
        let value =
            serde_json::json!({"path": "/tmp/\u{202e}gpj.sh", "t": "\u{9b}2J", "n": "a\nb"});
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let shown = json(&pretty);
        assert!(!shown.chars().any(|c| c != '\n' && is_hidden(c)), "{shown}");
        assert!(
            shown.contains("\\u202e") && shown.contains("\\u009b"),
            "{shown}"
        );
        assert!(shown.lines().count() > 1, "pretty printing kept");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }
}
