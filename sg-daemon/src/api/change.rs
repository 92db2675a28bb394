//! Putting a new desired state in force: validated, applied, persisted, or
//! nothing changes (and the rules in force are restored); `Reload`.

use std::path::Path;

use tracing::error;

use super::{Direction, Reply, edit::explain};
use crate::{
    config::schema::Document,
    daemon::ApplyReport,
    drift,
    model::Config,
    store::{Source, Store},
};

/// Validates, applies and persists a new desired state; on any error
/// nothing changes.
pub(super) fn change(
    state: &mut Store,
    mut doc: Document,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<ApplyReport, String> {
    state.check_writable(&doc)?;
    let mut config = doc
        .validate(Path::new("request"))
        .map_err(|e| explain(&doc, &e))?;
    state.complete(&mut config);
    doc.fill_rule_ids(&config);
    doc.canonical_addresses();
    let report = apply(&config).map_err(|e| {
        restore(state.config(), apply);
        format!("not applied: {e:#}")
    })?;
    if let Err(e) = state.commit(doc, config) {
        restore(state.config(), apply);
        return Err(format!("not applied: {e}"));
    }
    Ok(report)
}

/// `HealthCheck`: the findings; with `remove`, the redundant rules are
/// deleted in one change (validated, applied, persisted, or nothing
/// changes).
pub(super) fn health_check(
    state: &mut Store,
    group: &str,
    remove: bool,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<Reply, String> {
    let findings = crate::health::check(state.config(), group)?;
    let mut report = crate::health::HealthReport {
        group: group.to_owned(),
        findings,
        removed: Vec::new(),
    };
    let redundant: Vec<(Direction, String)> = report
        .findings
        .iter()
        .filter(|f| f.kind == "redundant")
        .map(|f| (f.direction, f.rule.clone()))
        .collect();
    if remove && !redundant.is_empty() {
        let mut doc = state.document().clone();
        // Ids first, so that the remaining rules keep theirs.
        doc.fill_rule_ids(state.config());
        let g = doc
            .security_group
            .iter_mut()
            .find(|g| g.id == group)
            .ok_or_else(|| format!("no group {group}"))?;
        for (dir, id) in &redundant {
            g.rules_mut(*dir)
                .retain(|r| r.id.as_deref() != Some(id.as_str()));
        }
        let applied = change(state, doc, apply)?;
        tracing::info!(
            "api: health check of group {group} removed {}{}",
            redundant
                .iter()
                .map(|(_, id)| id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            report_note(&applied)
        );
        report.removed = redundant.into_iter().map(|(_, id)| id).collect();
    }
    Ok(Reply::Health(report))
}

/// After a failed change: makes the host enforce the state in force again,
/// in case the failure came half-way through the interfaces.
fn restore(config: &Config, apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>) {
    if let Err(e) = apply(config) {
        error!("restoring the rules in force after a failed change: {e:#}");
    }
}

/// A reload: the config file becomes the desired state again. Refused when
/// it would delete a group under deletion protection, or discard changes
/// made through the API without `discard` (saying which, and how to keep
/// them).
pub(super) fn reload(
    state: &mut Store,
    discard: bool,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<Reply, String> {
    let (doc, config) = state.read_config_file()?;
    let file = state.config_file().display().to_string();
    let protected = crate::protection::protected_groups_lost(state.document(), &doc);
    if !protected.is_empty() {
        return Err(format!(
            "reload refused: {file} has no group {0}, which is under deletion protection; \
             add it to the file, or turn the protection off first \
             (sgctl group modify {0} --deletion-protection false)",
            protected.join(", ")
        ));
    }
    let lost = match state.source() {
        Source::State => drift::differences(state.document(), &doc),
        Source::File => Vec::new(),
    };
    if !lost.is_empty() && !discard {
        return Err(format!(
            "reload refused: it would discard changes made through the API: {}; \
             to keep them, write them into the file first (sgctl export > {file}), \
             or discard them: sgctl reload --discard-api-changes",
            lost.join("; ")
        ));
    }
    let report = apply(&config).map_err(|e| {
        restore(state.config(), apply);
        format!("not applied: {e:#}")
    })?;
    match state.reset_to_file(doc, config) {
        Ok(discarded) => {
            let mut message = format!("reloaded {}", state.config_file().display());
            if discarded {
                message.push_str(&format!(
                    "; changes made through the API were discarded ({} removed)",
                    state.state_file().display()
                ));
            }
            message.push_str(&report_note(&report));
            Ok(Reply::Done { message, id: None })
        }
        Err(e) => {
            restore(state.config(), apply);
            Err(format!("not applied: {e}"))
        }
    }
}

pub(super) fn report_note(report: &ApplyReport) -> String {
    let mut note = String::new();
    if !report.missing.is_empty() {
        note.push_str(&format!(
            "; not present on this host (enforced once they appear): {}",
            report.missing.join(", ")
        ));
    }
    for (name, why) in &report.unsupported {
        note.push_str(&format!("; {name} not enforced: {why}"));
    }
    if !report.released.is_empty() {
        note.push_str(&format!(
            "; no longer bound, so no longer filtered: {}",
            report.released.join(", ")
        ));
    }
    note
}
