//! Reading a config file's TOML into the document, reporting every syntax
//! and shape problem (unknown field, wrong type) rather than the first.
//!
//! The text is parsed with recovery, which yields a tree and every syntax
//! error. When the whole tree does not deserialise, each top-level value,
//! and each element of a top-level array, is deserialised on its own, so
//! that a problem in one group does not hide one in the next. Each problem
//! keeps its position in the file.

use std::path::Path;

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeArray, DeTable, DeValue, Deserializer, Error},
};

use super::{ConfigError, ConfigErrors, Document};

/// The document in `text`, or every syntax and shape problem in it.
pub(super) fn read(path: &Path, text: &str) -> Result<Document, ConfigErrors> {
    let (tree, syntax) = DeTable::parse_recoverable(text);
    if syntax.is_empty()
        && let Ok(doc) = Document::deserialize(Deserializer::from(tree.clone()))
    {
        return Ok(doc);
    }
    // One mistake can leave the parser confused for the rest of its line:
    // the first error of each line is reported.
    let mut lines = std::collections::BTreeSet::new();
    let mut found: Vec<(String, Error)> = syntax
        .into_iter()
        .filter(|e| lines.insert(line_of(text, e)))
        .map(|e| ("(syntax)".to_string(), e))
        .collect();
    for (key, value) in tree.get_ref().iter() {
        match value.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let one: DeArray = std::iter::once(item.clone()).collect();
                    let one = Spanned::new(value.span(), DeValue::Array(one));
                    if let Some(e) = shape_error(key, one) {
                        found.push((format!("{}[{i}]", key.get_ref()), e));
                    }
                }
            }
            _ => {
                if let Some(e) = shape_error(key, value.clone()) {
                    found.push((key.get_ref().to_string(), e));
                }
            }
        }
    }
    if found.is_empty() {
        // Not expected: every part reads alone but not the whole.
        let e = Document::deserialize(Deserializer::from(tree)).err();
        found.extend(e.map(|e| ("(syntax)".to_string(), e)));
    }
    found.sort_by_key(|(_, e)| e.span().map_or(0, |s| s.start));
    let errors: Vec<ConfigError> = found
        .into_iter()
        .flat_map(|(field, e)| {
            let at = e.span().map_or(0, |s| s.start);
            ConfigErrors::at(path.to_owned(), text, at, &field, e.message().to_string()).0
        })
        .collect();
    Err(ConfigErrors(errors))
}

/// The line an error is on.
fn line_of(text: &str, e: &Error) -> usize {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    text[..at].matches('\n').count()
}

/// The problem, if any, in a document that holds only `key = value`.
fn shape_error<'i>(
    key: &Spanned<toml::de::DeString<'i>>,
    value: Spanned<DeValue<'i>>,
) -> Option<Error> {
    let span = value.span();
    let mut table = DeTable::new();
    table.insert(key.clone(), value);
    Document::deserialize(Deserializer::from(Spanned::new(span, table))).err()
}
