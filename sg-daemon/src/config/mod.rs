//! The desired state: its schema (SPEC §7), reading it from TOML, and
//! checking it against SPEC §2 and §4 into the model.
//!
//! - `schema`: the document types, written once for the file, the store
//!   and the API;
//! - `validate/`: the checks, one module per object;
//! - `limits`: the SPEC §4 limits and the rule quota;
//! - `values`: addresses, port ranges, protocols and MACs as written;
//! - `shape`: reading the TOML, reporting every syntax and shape problem;
//! - `errors`: problems with their field path, located in the file.
//!
//! Every problem found is reported, each naming the file, line, column,
//! field path and the allowed values; a document with any problem yields no
//! `Config` at all, so nothing of it is applied. A document from the API is
//! checked by the same code, without positions.

mod errors;
pub mod limits;
pub mod rule_id;
pub mod schema;
mod shape;
mod validate;
pub mod values;

use std::path::Path;

pub use errors::{ConfigError, ConfigErrors};
pub use limits::{
    MAX_GROUP_REFERENCES_PER_GROUP, MAX_GROUPS_PER_INTERFACE, MAX_RULES_PER_INTERFACE,
    PRIORITY_RANGE,
};
pub use schema::Document;
pub use values::{parse_cidr, parse_port_range};

use crate::model::Config;

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_document(path).map(|(_, config)| config)
}

/// Reads and validates a config file, keeping the document as written.
pub fn load_document(path: &Path) -> Result<(Document, Config), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_document(path, &text)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_document(path, text).map(|(_, config)| config)
}

/// Validates config text and returns the document, its addresses in
/// canonical form, with its model.
pub fn parse_document(path: &Path, text: &str) -> Result<(Document, Config), ConfigErrors> {
    // Every syntax and shape problem (unknown field, wrong type), located.
    let mut doc = shape::read(path, text)?;
    let config = validate::document(&doc)
        .map_err(|problems| ConfigErrors::located(path.to_owned(), Some(text), problems))?;
    doc.canonical_addresses();
    Ok((doc, config))
}

/// Validates a document that has no text (an API request); `origin` names
/// it in messages.
pub fn validate(doc: &Document, origin: &Path) -> Result<Config, ConfigErrors> {
    validate::document(doc)
        .map_err(|problems| ConfigErrors::located(origin.to_owned(), None, problems))
}

#[cfg(test)]
mod tests;
