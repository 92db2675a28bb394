//! Editing a copy of the desired document: groups, rules (ids, patches),
//! interface bindings and lists; the checks that objects in use are not
//! deleted; validation errors named by object rather than by position.

use super::{Direction, Request};
use crate::{
    config::ConfigErrors,
    config::rule_id,
    config::schema::{self, Document},
};

/// Config errors of a changed document, naming objects by id rather than
/// by position in a file the client never saw.
pub(super) fn explain(doc: &Document, errors: &ConfigErrors) -> String {
    let lines: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{}: {}", friendly_field(doc, &e.field), e.message))
        .collect();
    format!("invalid: {}", lines.join("; "))
}

fn friendly_field(doc: &Document, field: &str) -> String {
    let mut objects = Vec::new();
    let mut rest = Vec::new();
    let mut group: Option<&schema::Group> = None;
    for segment in field.split('.') {
        let indexed = segment
            .strip_suffix(']')
            .and_then(|s| s.split_once('['))
            .and_then(|(name, i)| Some((name, i.parse::<usize>().ok()?)));
        let named = match indexed {
            Some(("security_group", i)) => doc.security_group.get(i).map(|g| {
                group = Some(g);
                format!("group {}", g.id.escape_debug())
            }),
            Some((dir @ ("ingress" | "egress"), i)) => group.map(|g| {
                match g
                    .rules(if dir == "ingress" {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    })
                    .get(i)
                    .and_then(|r| r.id.as_deref())
                {
                    Some(id) => format!("{dir} rule {}", id.escape_debug()),
                    None => format!("{dir} rule #{}", i + 1),
                }
            }),
            Some(("interface", i)) => doc
                .interface
                .get(i)
                .map(|b| format!("interface {}", b.name.escape_debug())),
            Some(("prefix_list", i)) => doc
                .prefix_list
                .get(i)
                .map(|l| format!("prefix list {}", l.id.escape_debug())),
            Some(("port_list", i)) => doc
                .port_list
                .get(i)
                .map(|l| format!("port list {}", l.id.escape_debug())),
            Some(("snapshot_policy", i)) => doc
                .snapshot_policy
                .get(i)
                .map(|p| format!("snapshot policy {}", p.id.escape_debug())),
            _ => None,
        };
        match named {
            Some(n) if rest.is_empty() => objects.push(n),
            _ => rest.push(segment),
        }
    }
    match (objects.is_empty(), rest.is_empty()) {
        (true, _) => field.to_owned(),
        (false, true) => objects.join(" "),
        (false, false) => format!("{}: {}", objects.join(" "), rest.join(".")),
    }
}

/// Applies an editing request to a copy of the desired state. Returns what
/// it did and, for a new rule, its id.
pub(super) fn edit_document(
    doc: &mut Document,
    request: Request,
) -> Result<(String, Option<String>), String> {
    match request {
        Request::CreateGroup { group } => {
            if group.id.is_empty() {
                return Err("a group needs an id".into());
            }
            if doc.group(&group.id).is_some() {
                return Err(format!("group {} exists", group.id));
            }
            let message = format!("created group {}", group.id);
            doc.security_group.push(group);
            Ok((message, None))
        }
        Request::CloneGroup {
            source,
            id,
            name,
            description,
            without_rules,
        } => clone_group(doc, &source, id, name, description, without_rules),
        Request::ModifyGroup {
            group,
            name,
            description,
            inner_access_policy,
            deletion_protection,
            members,
        } => {
            let g = find_group(doc, &group)?;
            let mut changed = Vec::new();
            if let Some(name) = name {
                g.name = non_empty(name);
                changed.push("name");
            }
            if let Some(description) = description {
                g.description = non_empty(description);
                changed.push("description");
            }
            if let Some(policy) = inner_access_policy {
                g.inner_access_policy = non_empty(policy);
                changed.push("inner_access_policy");
            }
            if let Some(protect) = deletion_protection {
                g.deletion_protection = protect;
                changed.push("deletion_protection");
            }
            if let Some(members) = members {
                g.members = members;
                changed.push("members");
            }
            if changed.is_empty() {
                return Err("nothing to modify: give at least one field".into());
            }
            Ok((
                format!("modified {} of group {group}", changed.join(", ")),
                None,
            ))
        }
        Request::DeleteGroup { group } => {
            let g = doc
                .group(&group)
                .ok_or_else(|| format!("no group {group}"))?;
            let mut reasons = Vec::new();
            if g.deletion_protection {
                reasons.push(format!(
                    "it is under deletion protection (turn it off first: sgctl group modify {group} --deletion-protection false)"
                ));
            }
            let bound = bound_interfaces(doc, &group);
            if !bound.is_empty() {
                reasons.push(format!(
                    "it is bound to interface {} (leave it first)",
                    bound.join(", ")
                ));
            }
            let referrers = referrers(doc, &group);
            if !referrers.is_empty() {
                reasons.push(format!(
                    "rules of other groups reference it: {}",
                    referrers.join(", ")
                ));
            }
            if !reasons.is_empty() {
                return Err(format!(
                    "group {group} cannot be deleted: {}",
                    reasons.join("; ")
                ));
            }
            doc.security_group.retain(|g| g.id != group);
            // Its snapshot policies let it go; its snapshots stay for
            // their retention.
            let mut policies = Vec::new();
            for p in &mut doc.snapshot_policy {
                if p.security_groups.contains(&group) {
                    p.security_groups.retain(|g| *g != group);
                    policies.push(p.id.clone());
                }
            }
            let note = match policies.is_empty() {
                true => String::new(),
                false => format!(
                    " (and took it off snapshot policy {}; its snapshots stay for their retention)",
                    policies.join(", ")
                ),
            };
            Ok((format!("deleted group {group}{note}"), None))
        }
        Request::AuthorizeRule {
            group,
            direction,
            mut rule,
        } => {
            let g = find_group(doc, &group)?;
            let id = match rule.id.as_deref() {
                Some("") | None => next_rule_id(g, direction, &rule),
                Some(id) => {
                    if rule_position(g, None, id).is_some() {
                        return Err(format!("group {group} already has a rule {id}"));
                    }
                    id.to_owned()
                }
            };
            rule.id = Some(id.clone());
            g.rules_mut(direction).push(rule);
            Ok((
                format!("added {} rule {id} to group {group}", direction.name()),
                Some(id),
            ))
        }
        Request::RevokeRule {
            group,
            direction,
            id,
        } => {
            let (rules, dir, i) = find_rule(doc, &group, direction, &id)?;
            rules.remove(i);
            Ok((
                format!("removed {} rule {id} from group {group}", dir.name()),
                None,
            ))
        }
        Request::ModifyRule {
            group,
            direction,
            id,
            rule,
        } => {
            let (rules, dir, i) = find_rule(doc, &group, direction, &id)?;
            // As for groups: a request without a field is a mistake, not a change.
            if (schema::Rule {
                id: None,
                ..rule.clone()
            }) == schema::Rule::default()
            {
                return Err("nothing to modify: give at least one field".into());
            }
            patch_rule(&mut rules[i], rule, dir)?;
            Ok((
                format!("modified {} rule {id} of group {group}", dir.name()),
                None,
            ))
        }
        Request::JoinInterface {
            interface,
            group,
            mode,
            addresses,
        } => {
            if doc.group(&group).is_none() {
                return Err(format!("no group {group}"));
            }
            let binding = match doc.interface.iter_mut().find(|b| b.name == interface) {
                Some(b) => b,
                None => {
                    doc.interface.push(schema::Binding {
                        name: interface.clone(),
                        ..Default::default()
                    });
                    doc.interface.last_mut().expect("just pushed")
                }
            };
            if binding.security_groups.contains(&group) {
                return Err(format!("interface {interface} is already in group {group}"));
            }
            binding.security_groups.push(group.clone());
            if let Some(mode) = mode {
                binding.mode = non_empty(mode);
            }
            if let Some(addresses) = addresses {
                binding.addresses = addresses;
            }
            Ok((format!("interface {interface} joined group {group}"), None))
        }
        Request::LeaveInterface { interface, group } => {
            let b = doc
                .interface
                .iter_mut()
                .find(|b| b.name == interface)
                .ok_or_else(|| format!("interface {interface} is not bound"))?;
            let before = b.security_groups.len();
            b.security_groups.retain(|g| *g != group);
            if b.security_groups.len() == before {
                return Err(format!("interface {interface} is not in group {group}"));
            }
            if b.security_groups.is_empty() {
                return Err(format!(
                    "group {group} is the last group of interface {interface}: an interface \
                     stays in at least one group; join another group first, or unbind the \
                     interface: remove its [[interface]] from the config file (from \
                     `sgctl export` if the API changed it), then sgctl reload \
                     --discard-api-changes"
                ));
            }
            Ok((format!("interface {interface} left group {group}"), None))
        }
        Request::SetPrefixList { list } => {
            Ok((set_list(&mut doc.prefix_list, list, "prefix list"), None))
        }
        Request::SetPortList { list } => {
            Ok((set_list(&mut doc.port_list, list, "port list"), None))
        }
        Request::DeletePrefixList { id } => {
            let users = rules_where(doc, |r| {
                r.source_prefix_list_id.as_deref() == Some(&id)
                    || r.dest_prefix_list_id.as_deref() == Some(&id)
            });
            let users = users.into_iter().map(|(_, name)| name).collect();
            delete_list(&mut doc.prefix_list, &id, "prefix list", users)
        }
        Request::DeletePortList { id } => {
            let users = rules_where(doc, |r| r.port_range_list_id.as_deref() == Some(&id));
            let users = users.into_iter().map(|(_, name)| name).collect();
            delete_list(&mut doc.port_list, &id, "port list", users)
        }
        policy @ (Request::CreateSnapshotPolicy { .. }
        | Request::ModifySnapshotPolicy { .. }
        | Request::DeleteSnapshotPolicy { .. }
        | Request::AssociateSnapshotPolicy { .. }
        | Request::DisassociateSnapshotPolicy { .. }) => super::snapshot::edit_policy(doc, policy),
        other => Err(format!("{} changes nothing here", other.verb())),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn find_group<'a>(doc: &'a mut Document, id: &str) -> Result<&'a mut schema::Group, String> {
    doc.group_mut(id).ok_or_else(|| format!("no group {id}"))
}

/// The rules holding rule `id` of `group` (in `dir`, or either), its
/// direction and its index there.
fn find_rule<'a>(
    doc: &'a mut Document,
    group: &str,
    dir: Option<Direction>,
    id: &str,
) -> Result<(&'a mut Vec<schema::Rule>, Direction, usize), String> {
    let g = find_group(doc, group)?;
    match (rule_position(g, dir, id), dir) {
        (Some((d, i)), _) => Ok((g.rules_mut(d), d, i)),
        (None, Some(d)) => Err(format!("group {group} has no {} rule {id}", d.name())),
        (None, None) => Err(format!("group {group} has no rule {id}")),
    }
}

/// The direction and index of rule `id` in `g` (in `dir`, or either).
fn rule_position(
    g: &schema::Group,
    dir: Option<Direction>,
    id: &str,
) -> Option<(Direction, usize)> {
    Direction::BOTH
        .into_iter()
        .filter(|d| dir.is_none_or(|want| want == *d))
        .find_map(|d| {
            g.rules(d)
                .iter()
                .position(|r| r.id.as_deref() == Some(id))
                .map(|i| (d, i))
        })
}

/// The file's scheme: derived from the rule's content, with a suffix when
/// the group already has that id. Never an id of another content, so a
/// revoked rule's id does not come back for a different rule.
pub(super) fn next_rule_id(g: &schema::Group, dir: Direction, rule: &schema::Rule) -> String {
    rule_id::generated(&g.id, dir, rule, |id| rule_position(g, None, id).is_some())
}

/// CloneGroup: `source`'s type, inner access policy, members and (unless
/// `without_rules`) rules, without their ids (fresh ones are generated)
/// and with priorities over 100 made 100. Bindings and deletion protection
/// are not copied; the description is `source`'s unless one is given.
fn clone_group(
    doc: &mut Document,
    source: &str,
    id: String,
    name: Option<String>,
    description: Option<String>,
    without_rules: bool,
) -> Result<(String, Option<String>), String> {
    let src = doc
        .group(source)
        .ok_or_else(|| format!("cannot clone: no group {source}"))?;
    if id.is_empty() {
        return Err("cannot clone: the new group needs an id (--id)".into());
    }
    if doc.group(&id).is_some() {
        return Err(format!(
            "cannot clone: group {id} exists; choose another --id"
        ));
    }
    let fresh = |rules: &[schema::Rule]| -> Vec<schema::Rule> {
        if without_rules {
            return Vec::new();
        }
        rules
            .iter()
            .map(|r| schema::Rule {
                id: None,
                priority: r.priority.map(|p| p.min(100)),
                ..r.clone()
            })
            .collect()
    };
    let group = schema::Group {
        id: id.clone(),
        name: name.and_then(non_empty),
        description: description.map_or_else(|| src.description.clone(), non_empty),
        kind: src.kind.clone(),
        inner_access_policy: src.inner_access_policy.clone(),
        members: src.members.clone(),
        deletion_protection: false,
        ingress: fresh(&src.ingress),
        egress: fresh(&src.egress),
    };
    let rules = group.ingress.len() + group.egress.len();
    doc.security_group.push(group);
    Ok((
        format!("cloned group {source} as {id} ({rules} rules)"),
        None,
    ))
}

/// ModifyRule: the given fields replace the rule's; the remote side and the
/// destination ports are replaced as a whole; an empty string removes a
/// field.
fn patch_rule(rule: &mut schema::Rule, patch: schema::Rule, dir: Direction) -> Result<(), String> {
    if let Some(id) = &patch.id
        && rule.id.as_ref() != Some(id)
    {
        return Err("a rule's id cannot be changed; revoke it and authorize a new one".into());
    }
    let ingress = dir == Direction::Ingress;
    let remote_given = if ingress {
        patch.source_cidr_ip.is_some()
            || patch.source_group_id.is_some()
            || patch.source_prefix_list_id.is_some()
    } else {
        patch.dest_cidr_ip.is_some()
            || patch.dest_group_id.is_some()
            || patch.dest_prefix_list_id.is_some()
    };
    if remote_given {
        if ingress {
            rule.source_cidr_ip = None;
            rule.source_group_id = None;
            rule.source_prefix_list_id = None;
        } else {
            rule.dest_cidr_ip = None;
            rule.dest_group_id = None;
            rule.dest_prefix_list_id = None;
        }
    }
    if patch.port_range.is_some() || patch.port_range_list_id.is_some() {
        rule.port_range = None;
        rule.port_range_list_id = None;
    }
    fn set(slot: &mut Option<String>, value: Option<String>) {
        if let Some(v) = value {
            *slot = non_empty(v);
        }
    }
    set(&mut rule.policy, patch.policy);
    set(&mut rule.port_range, patch.port_range);
    set(&mut rule.port_range_list_id, patch.port_range_list_id);
    set(&mut rule.source_port_range, patch.source_port_range);
    set(&mut rule.source_cidr_ip, patch.source_cidr_ip);
    set(&mut rule.source_group_id, patch.source_group_id);
    set(&mut rule.source_prefix_list_id, patch.source_prefix_list_id);
    set(&mut rule.dest_cidr_ip, patch.dest_cidr_ip);
    set(&mut rule.dest_group_id, patch.dest_group_id);
    set(&mut rule.dest_prefix_list_id, patch.dest_prefix_list_id);
    set(&mut rule.description, patch.description);
    if patch.priority.is_some() {
        rule.priority = patch.priority;
    }
    if patch.ip_protocol.is_some() {
        rule.ip_protocol = patch.ip_protocol;
    }
    Ok(())
}

fn set_list(lists: &mut Vec<schema::List>, list: schema::List, kind: &str) -> String {
    match lists.iter_mut().find(|l| l.id == list.id) {
        Some(old) => {
            let message = format!("replaced {kind} {}", list.id);
            *old = list;
            message
        }
        None => {
            let message = format!("created {kind} {}", list.id);
            lists.push(list);
            message
        }
    }
}

fn delete_list(
    lists: &mut Vec<schema::List>,
    id: &str,
    kind: &str,
    users: Vec<String>,
) -> Result<(String, Option<String>), String> {
    if !lists.iter().any(|l| l.id == id) {
        return Err(format!("no {kind} {id}"));
    }
    if !users.is_empty() {
        return Err(format!(
            "{kind} {id} cannot be deleted: rules reference it: {}",
            users.join(", ")
        ));
    }
    lists.retain(|l| l.id != id);
    Ok((format!("deleted {kind} {id}"), None))
}

/// Every rule for which `pred` holds: its group, and how to name it.
fn rules_where(doc: &Document, pred: impl Fn(&schema::Rule) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in &doc.security_group {
        for (dir, rules) in [("ingress", &g.ingress), ("egress", &g.egress)] {
            for r in rules.iter().filter(|r| pred(r)) {
                let id = r.id.as_deref().unwrap_or("(new)");
                out.push((g.id.clone(), format!("{} {dir} rule {id}", g.id)));
            }
        }
    }
    out
}

pub(super) fn bound_interfaces(doc: &Document, group: &str) -> Vec<String> {
    doc.interface
        .iter()
        .filter(|b| b.security_groups.iter().any(|g| g == group))
        .map(|b| b.name.clone())
        .collect()
}

/// Rules of other groups that reference `group`.
pub(super) fn referrers(doc: &Document, group: &str) -> Vec<String> {
    rules_where(doc, |r| r.group_reference() == Some(group))
        .into_iter()
        .filter(|(g, _)| g != group)
        .map(|(_, name)| name)
        .collect()
}
