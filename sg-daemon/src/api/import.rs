//! `ImportGroup`: the rules of an ECS file (JSON or CSV, [`crate::ecs`])
//! added to a group in one change (validated, applied, persisted, or
//! nothing changes), with the seeds' rules: at most [`MAX_RULES`] a file;
//! priorities over 100 skipped; a rule that fails the mapping or the
//! validation every change gets refuses the whole file (naming its row or
//! index and field); duplicates of existing rules (or of earlier rules of
//! the file) — the same direction and content apart from the id and the
//! description — skipped. Ids from the file are not trusted: every added
//! rule gets a fresh id.

use std::path::Path;

use super::{Direction, Reply, change::change, change::report_note, edit::next_rule_id};
use crate::{
    config::schema::{Document, ProtocolValue, Rule},
    daemon::ApplyReport,
    ecs::{ImportReport, ImportedRule, permissions_from_text},
    model::Config,
    store::Store,
};

/// The seeds' limit of rules in one import.
pub const MAX_RULES: usize = 200;

/// A rule's content for finding duplicates: without id and description,
/// defaults spelled out, names in lower case, protocols as numbers.
fn content(dir: Direction, rule: &Rule) -> (Direction, Rule) {
    let lower = |v: &Option<String>| v.as_deref().map(str::to_ascii_lowercase);
    let mut r = Rule {
        id: None,
        description: None,
        ..rule.clone()
    };
    r.priority = Some(r.priority.unwrap_or(1));
    r.policy = Some(lower(&r.policy).unwrap_or_else(|| "accept".into()));
    // One spelling of a protocol: `TCP`, `tcp` and `6` are one protocol.
    if let Some(p) = &r.ip_protocol {
        r.ip_protocol = Some(match crate::config::values::parse_protocol(p) {
            Some(crate::model::Protocol::All) => ProtocolValue::Name("all".into()),
            Some(crate::model::Protocol::Number(n)) => ProtocolValue::Number(n.into()),
            None => p.clone(),
        });
    }
    if r.port_range.is_none() && r.port_range_list_id.is_none() {
        r.port_range = Some("-1/-1".into());
    }
    for a in [&mut r.source_cidr_ip, &mut r.dest_cidr_ip] {
        if let Some(c) = a {
            let c = c.to_ascii_lowercase();
            *a = Some(match c.parse::<ipnet::IpNet>() {
                Ok(n) => n.trunc().to_string(),
                Err(_) => match c.parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip).to_string(),
                    Err(_) => c,
                },
            });
        }
    }
    (dir, r)
}

/// "PascalCase" of a rule field's name (the ECS column it came from).
fn column(field: &str) -> String {
    field
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub(super) fn import(
    state: &mut Store,
    group: &str,
    format: &str,
    content_text: &str,
    dry_run: bool,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<Reply, String> {
    if state.document().group(group).is_none() {
        return Err(format!("cannot import: no group {group}"));
    }
    let (permissions, csv) =
        permissions_from_text(content_text, format).map_err(|e| format!("cannot import: {e}"))?;
    if permissions.len() > MAX_RULES {
        return Err(format!(
            "cannot import: the file has {} rules; at most {MAX_RULES} can be imported at once \
             (nothing was imported)",
            permissions.len()
        ));
    }
    let position = |i: usize| {
        if csv {
            format!("row {}", i + 2)
        } else {
            format!("index {i}")
        }
    };
    let mut report = ImportReport {
        group: group.to_owned(),
        dry_run,
        ..Default::default()
    };
    let mut doc: Document = state.document().clone();
    // Ids first, so that existing rules keep theirs (and duplicates name them).
    doc.fill_rule_ids(state.config());
    let g = doc.group(group).expect("checked above");
    let mut seen: Vec<((Direction, Rule), String)> = [Direction::Ingress, Direction::Egress]
        .into_iter()
        .flat_map(|d| {
            g.rules(d)
                .iter()
                .map(move |r| (content(d, r), r.id.clone().unwrap_or_default()))
        })
        .collect();
    // Where each added rule came from: direction, index there, position,
    // the permission.
    let mut origin: Vec<(Direction, usize, String, usize)> = Vec::new();
    for (i, p) in permissions.iter().enumerate() {
        let at = position(i);
        let (dir, mut rule) = match p.to_rule() {
            Ok(r) => r,
            Err(e) => {
                let (field, reason) = e.split_once(": ").unwrap_or(("", e.as_str()));
                report.refused.push(ImportedRule {
                    position: at,
                    direction: p.direction.to_ascii_lowercase(),
                    field: field.to_owned(),
                    reason: reason.to_owned(),
                    ..Default::default()
                });
                continue;
            }
        };
        let skip = |reason: String, id: String| ImportedRule {
            position: at.clone(),
            direction: dir.name().into(),
            id,
            field: String::new(),
            reason,
        };
        if let Some(priority) = rule.priority.filter(|p| *p > 100) {
            report.skipped.push(skip(
                format!("priority {priority} is over 100 (the seeds' limit)"),
                String::new(),
            ));
            continue;
        }
        let key = content(dir, &rule);
        if let Some((_, id)) = seen.iter().find(|(k, _)| *k == key) {
            report
                .skipped
                .push(skip(format!("duplicate of rule {id}"), id.clone()));
            continue;
        }
        let g = doc.group_mut(group).expect("checked above");
        rule.id = Some(next_rule_id(g, dir, &rule));
        let id = rule.id.clone().unwrap_or_default();
        seen.push((key, id.clone()));
        let rules = g.rules_mut(dir);
        origin.push((dir, rules.len(), at.clone(), i));
        rules.push(rule);
        report.added.push(skip(String::new(), id));
    }
    // The validation of every change, each error named by its rule.
    if let Err(errors) = doc.validate(Path::new("request")) {
        let gi = doc
            .security_group
            .iter()
            .position(|g| g.id == group)
            .expect("checked above");
        let mut other = Vec::new();
        for e in &errors.0 {
            let found = origin.iter().find_map(|(dir, j, at, i)| {
                let prefix = format!("security_group[{gi}].{}[{j}]", dir.name());
                let rest = e.field.strip_prefix(&prefix)?;
                (rest.is_empty() || rest.starts_with('.'))
                    .then(|| (dir, at, rest.trim_start_matches('.'), &permissions[*i]))
            });
            match found {
                Some((dir, at, field, p)) => report.refused.push(ImportedRule {
                    position: at.clone(),
                    direction: dir.name().into(),
                    // The column the value came from (IPv6 ones by name).
                    field: match field {
                        "source_cidr_ip" if !p.ipv6_source_cidr_ip.is_empty() => {
                            "Ipv6SourceCidrIp".into()
                        }
                        "dest_cidr_ip" if !p.ipv6_dest_cidr_ip.is_empty() => {
                            "Ipv6DestCidrIp".into()
                        }
                        f => column(f),
                    },
                    reason: e.message.clone(),
                    ..Default::default()
                }),
                None => other.push(format!("{}: {}", e.field, e.message)),
            }
        }
        if report.refused.is_empty() {
            return Err(format!(
                "cannot import: the group would not be valid: {}",
                other.join("; ")
            ));
        }
        // Errors of the group as a whole (none is expected once a rule is
        // refused, but none is lost either).
        report
            .refused
            .extend(other.into_iter().map(|reason| ImportedRule {
                position: "group".into(),
                reason,
                ..Default::default()
            }));
    }
    if !report.refused.is_empty() {
        // Nothing of a file with a refused rule is applied.
        report.added.clear();
        report.refused.sort_by_key(|r| {
            r.position
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
        });
        return Ok(Reply::Import(report));
    }
    if dry_run || report.added.is_empty() {
        return Ok(Reply::Import(report));
    }
    let applied = change(state, doc, apply)?;
    report.applied = true;
    tracing::info!(
        "api: imported {} rules into group {group} ({} skipped){}",
        report.added.len(),
        report.skipped.len(),
        report_note(&applied)
    );
    Ok(Reply::Import(report))
}
