//! The tables of the management operations' answers: an import's
//! added, skipped and refused rules; a health check's findings.

use super::render::{or_dash, table};

/// `group import`: one imported rule a row, then a summary.
pub(crate) fn import(report: &sg_daemon::ecs::ImportReport) -> String {
    let rows: Vec<Vec<String>> = [
        ("added", &report.added),
        ("skipped", &report.skipped),
        ("refused", &report.refused),
    ]
    .into_iter()
    .flat_map(|(what, rules)| {
        rules.iter().map(move |r| {
            vec![
                what.to_owned(),
                r.position.clone(),
                or_dash(Some(&r.direction)),
                or_dash(Some(&r.id)),
                or_dash(Some(&r.field)),
                or_dash(Some(&r.reason)),
            ]
        })
    })
    .collect();
    let mut out = if rows.is_empty() {
        String::from("the file has no rules\n")
    } else {
        table(
            &["RESULT", "AT", "DIRECTION", "RULE", "FIELD", "REASON"],
            &rows,
        )
    };
    let g = &report.group;
    let (added, skipped) = (report.added.len(), report.skipped.len());
    out.push_str(&if !report.refused.is_empty() {
        format!(
            "refused: {} rule(s) not valid; nothing imported into group {g}\n",
            report.refused.len()
        )
    } else if report.dry_run {
        format!(
            "dry run: would add {added} rule(s) to group {g}, skip {skipped}; nothing changed\n"
        )
    } else {
        format!("imported {added} rule(s) into group {g}, skipped {skipped}\n")
    });
    out
}

/// `group health-check`: one finding a row, then what was removed.
pub(crate) fn health(report: &sg_daemon::health::HealthReport) -> String {
    if report.findings.is_empty() {
        return format!("group {}: healthy, no findings\n", report.group);
    }
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            vec![
                f.kind.clone(),
                f.direction.name().to_owned(),
                f.rule.clone(),
                or_dash(f.by.as_deref()),
                f.why.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["FINDING", "DIRECTION", "RULE", "COVERED BY", "WHY"],
        &rows,
    );
    if !report.removed.is_empty() {
        out.push_str(&format!(
            "removed {} redundant rule(s): {}\n",
            report.removed.len(),
            report.removed.join(", ")
        ));
    }
    out
}
