//! Problems found in a desired state, and where they are.
//!
//! Validation names each problem by its field path
//! (`security_group[0].ingress[2].priority`). When the document came from a
//! file, the path is looked up in the file's parse tree, which keeps every
//! value's span, to give the line and column; a path that ends at a field
//! the file does not have (a missing `policy`) points at the nearest
//! enclosing value (the rule). Documents from the API have no positions.

use std::{fmt, ops::Range, path::PathBuf};

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the document has no text (an API request).
    pub line: usize,
    pub column: usize,
    /// Path of the offending field, e.g. `security_group[0].ingress[2].priority`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// A problem as validation finds it: a field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// Where a file locates the problem when that is not `field` itself
    /// (e.g. the rule, for a conflict between two of its fields).
    pub at: Option<String>,
}

impl ConfigErrors {
    /// One problem at byte offset `at` of `text` (a syntax or shape error).
    pub fn at(file: PathBuf, text: &str, at: usize, field: &str, message: String) -> ConfigErrors {
        let (line, column) = line_column(text, at);
        ConfigErrors(vec![ConfigError {
            file,
            line,
            column,
            field: field.into(),
            message,
        }])
    }

    /// Validation problems of a document read from `text` (when there is
    /// one), located in it.
    pub fn located(file: PathBuf, text: Option<&str>, problems: Vec<Problem>) -> ConfigErrors {
        let tree = text.and_then(|t| DeTable::parse(t).ok());
        let errors = problems
            .into_iter()
            .map(|p| {
                let (line, column) = match (text, &tree) {
                    (Some(text), Some(tree)) => line_column(
                        text,
                        span_of(tree, p.at.as_deref().unwrap_or(&p.field)).start,
                    ),
                    _ => (0, 0),
                };
                ConfigError {
                    file: file.clone(),
                    line,
                    column,
                    field: p.field,
                    message: p.message,
                }
            })
            .collect();
        ConfigErrors(errors)
    }
}

/// 1-based line and column of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The span of the deepest value on `field`'s path that the file has.
fn span_of(tree: &Spanned<DeTable<'_>>, field: &str) -> Range<usize> {
    let mut span = tree.span();
    let mut table = Some(tree.get_ref());
    for segment in field.split('.') {
        let (key, index) = match segment.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((key, i)) => (key, i.parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((_, found)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key))
        else {
            break;
        };
        let value = match (index, found.get_ref()) {
            (None, _) => Some(found),
            (Some(i), DeValue::Array(items)) => items.get(i),
            (Some(_), _) => None,
        };
        let Some(value) = value else { break };
        span = value.span();
        table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_found_down_to_the_deepest_value_the_file_has() {
        let text = "[daemon]\nbpffs_dir = \"x\"\n\n[[g]]\nid = 1\n\n[[g]]\nid = 2\nlist = [\"a\", \"b\"]\n";
        let tree = DeTable::parse(text).unwrap();
        let at = |field: &str| line_column(text, span_of(&tree, field).start);
        assert_eq!(at("daemon.bpffs_dir"), (2, 13));
        assert_eq!(at("g[1].id"), (8, 6));
        assert_eq!(at("g[1].list[1]"), (9, 14));
        // Missing fields point at what holds them.
        assert_eq!(at("g[1].policy").0, at("g[1]").0);
    }
}
