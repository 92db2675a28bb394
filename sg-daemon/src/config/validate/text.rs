//! Ids, names and descriptions (the ECS limits of `limits.rs`): text that
//! `sgctl` prints in its tables and the store writes back, so nothing in
//! it may fake a row, a path or a megabyte.

use super::Validator;
use crate::config::limits::{ID_LEN_RANGE, ID_PUNCTUATION, MAX_DESCRIPTION_LEN, NAME_LEN_RANGE};

/// What an id of `prefix` may be, for messages.
fn id_allowed(prefix: &str, slash: bool) -> String {
    let start = if prefix.is_empty() {
        "starting with a letter or digit".to_string()
    } else {
        format!("starting with {prefix:?}")
    };
    format!(
        "{}..={} characters {start}, of letters, digits, '-', '_', '.'{}",
        ID_LEN_RANGE.start(),
        ID_LEN_RANGE.end(),
        if slash { ", '/'" } else { "" }
    )
}

/// A character that would change how text reads: control characters
/// (newlines, tabs, escapes) and the bidirectional overrides.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl Validator {
    /// A group or list id: `prefix`, then letters, digits, `-`, `_`, `.`.
    pub(super) fn id(&mut self, field: &str, id: &str, prefix: &str) {
        self.id_of(field, id, prefix, false);
    }

    /// A rule id: letters, digits, `-`, `_`, `.`, `/`, starting with a
    /// letter or digit.
    pub(super) fn rule_id(&mut self, field: &str, id: &str) {
        self.id_of(field, id, "", true);
    }

    fn id_of(&mut self, field: &str, id: &str, prefix: &str, slash: bool) {
        let chars = id.chars().count();
        let ok = ID_LEN_RANGE.contains(&chars)
            && id.starts_with(prefix)
            && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && id.chars().all(|c| {
                c.is_ascii_alphanumeric() || ID_PUNCTUATION.contains(&c) || (slash && c == '/')
            });
        if !ok {
            self.error(
                field,
                format!(
                    "{:?} is not an id; allowed: {}",
                    shown(id),
                    id_allowed(prefix, slash)
                ),
            );
        }
    }

    /// A `name`: 2..=128 characters, none hidden.
    pub(super) fn name(&mut self, field: &str, name: Option<&str>) {
        let Some(name) = name else { return };
        let chars = name.chars().count();
        if !NAME_LEN_RANGE.contains(&chars) || name.chars().any(hidden) {
            self.error(
                field,
                format!(
                    "{:?} ({chars} characters) is not a name; allowed: {}..={} characters, no control characters",
                    shown(name),
                    NAME_LEN_RANGE.start(),
                    NAME_LEN_RANGE.end()
                ),
            );
        }
    }

    /// A `description`: at most 512 characters, none hidden.
    pub(super) fn description(&mut self, field: &str, text: Option<&str>) {
        let Some(text) = text else { return };
        let chars = text.chars().count();
        if chars > MAX_DESCRIPTION_LEN || text.chars().any(hidden) {
            self.error(
                field,
                format!(
                    "{:?} ({chars} characters) is not a description; allowed: at most {MAX_DESCRIPTION_LEN} characters, no control characters (newlines, tabs)",
                    shown(text)
                ),
            );
        }
    }
}

/// `text`, cut short for a message.
fn shown(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() <= SHOWN {
        text.to_string()
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head}...")
    }
}
