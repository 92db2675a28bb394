//! Deletion protection on every path: the API refuses to delete a
//! protected group (`api::edit`), a reload refuses a file that lacks one
//! (`api::change::reload`), and a restart refuses it too. For the restart,
//! sgd keeps a record of the groups under protection in force,
//! `<state_dir>/protected-groups.toml`, written whenever the desired state
//! changes: a config file edited while sgd was stopped cannot drop one of
//! them by omission. To delete a protected group, turn its protection off
//! first (in the file, or `sgctl group modify G --deletion-protection
//! false`), apply that, then remove it.

use std::{io, path::Path};

use serde::{Deserialize, Serialize};

use crate::{config::schema::Document, store::write_atomic};

/// The record's name in `state_dir`.
pub const RECORD_FILE: &str = "protected-groups.toml";

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    groups: Vec<String>,
}

/// The ids of the groups under deletion protection in `doc`.
pub fn protected_groups(doc: &Document) -> Vec<String> {
    let mut ids: Vec<String> = doc
        .security_group
        .iter()
        .filter(|g| g.deletion_protection)
        .map(|g| g.id.clone())
        .collect();
    ids.sort();
    ids
}

/// The groups under deletion protection in `state` that `file` does not
/// have: a reload of `file` would delete them, so it is refused.
pub fn protected_groups_lost(state: &Document, file: &Document) -> Vec<String> {
    missing_from(&protected_groups(state), file)
}

fn missing_from(ids: &[String], doc: &Document) -> Vec<String> {
    ids.iter()
        .filter(|id| doc.group(id).is_none())
        .cloned()
        .collect()
}

/// At start: refuses a desired state (read from `source`) that lacks a
/// group the state last in force had under deletion protection, naming
/// it and saying how to delete it for good. No record (a first start):
/// nothing to check.
pub fn check_at_start(state_dir: &Path, doc: &Document, source: &Path) -> Result<(), String> {
    let record = state_dir.join(RECORD_FILE);
    let text = match std::fs::read_to_string(&record) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", record.display())),
    };
    let recorded: Record = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {e}(remove it to start without the deletion-protection check)",
            record.display()
        )
    })?;
    let lost = missing_from(&recorded.groups, doc);
    if lost.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{source} has no security group {lost}, which is under deletion protection \
         (recorded in {record}); the rules last applied stay enforced meanwhile. \
         Add {lost} back to the file; to delete it, set `deletion_protection = false` on it, \
         start (or reload), then remove it",
        source = source.display(),
        lost = lost.join(", "),
        record = record.display(),
    ))
}

/// Records the groups under deletion protection in `doc`, the desired
/// state now in force, if they changed.
pub fn record(state_dir: &Path, doc: &Document) -> io::Result<()> {
    let record = Record {
        groups: protected_groups(doc),
    };
    let path = state_dir.join(RECORD_FILE);
    let current = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| toml::from_str::<Record>(&text).ok());
    if current.as_ref() == Some(&record) || (current.is_none() && record.groups.is_empty()) {
        return Ok(());
    }
    let body = toml::to_string(&record).map_err(io::Error::other)?;
    let text = format!(
        "# Written by sgd: the security groups under deletion protection in force.\n\
         # sgd refuses to start from a config file that lacks one of them.\n{body}"
    );
    write_atomic(&path, text.as_bytes())
}
