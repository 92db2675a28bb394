//! `[[security_group]]`: type, intra-group policy, members (at most the
//! type's number of addresses), the limit on group references, unique rule ids; its rules are `rule.rs`'s.

use std::collections::HashSet;

use super::{Refs, Validator};
use crate::{
    config::{
        limits::{GROUP_ID_PREFIX, MAX_GROUP_REFERENCES_PER_GROUP},
        rule_id, schema,
        values::cidr,
    },
    model::{Direction, GroupType, SecurityGroup},
};

impl Validator {
    pub(super) fn group(&mut self, g: &schema::Group, field: &str, refs: &Refs) -> SecurityGroup {
        self.id(&format!("{field}.id"), &g.id, GROUP_ID_PREFIX);
        self.name(&format!("{field}.name"), g.name.as_deref());
        self.description(&format!("{field}.description"), g.description.as_deref());
        let kind = match g.kind.as_deref() {
            None | Some("basic") => GroupType::Basic,
            Some("enterprise") => GroupType::Enterprise,
            Some(other) => {
                self.error(
                    format!("{field}.type"),
                    format!("{other:?} is not a group type; allowed: \"basic\", \"enterprise\""),
                );
                GroupType::Basic
            }
        };
        let inner_access_accept = match g.inner_access_policy.as_deref() {
            None => kind == GroupType::Basic,
            Some(_) if kind == GroupType::Enterprise => {
                self.error(
                    format!("{field}.inner_access_policy"),
                    "enterprise groups have no intra-group policy; remove this field",
                );
                false
            }
            Some("accept") => true,
            Some("drop") => false,
            Some(other) => {
                self.error(
                    format!("{field}.inner_access_policy"),
                    format!("{other:?} is not allowed; allowed: \"accept\", \"drop\""),
                );
                true
            }
        };
        let mut members = Vec::new();
        for (i, m) in g.members.iter().enumerate() {
            match cidr(m) {
                Ok(net) => members.push(net),
                Err(why) => self.error(
                    format!("{field}.members[{i}]"),
                    format!("{m:?} {why}; allowed: an IPv4 or IPv6 address or CIDR"),
                ),
            }
        }
        if g.members.len() > kind.max_addresses() {
            self.error(
                format!("{field}.members"),
                format!(
                    "{} addresses; allowed: at most {} for a group of type \"{}\", bound instances' addresses included",
                    g.members.len(),
                    kind.max_addresses(),
                    kind.name()
                ),
            );
        }
        let group_refs = g
            .ingress
            .iter()
            .chain(&g.egress)
            .filter(|r| r.group_reference().is_some())
            .count();
        if group_refs > MAX_GROUP_REFERENCES_PER_GROUP {
            self.error_at(
                field.to_string(),
                format!("{field}.id"),
                format!("{group_refs} rules reference a group; allowed: at most {MAX_GROUP_REFERENCES_PER_GROUP} per group"),
            );
        }
        // Generated ids avoid the explicit ones and each other.
        let mut taken: HashSet<String> = g
            .ingress
            .iter()
            .chain(&g.egress)
            .filter_map(|r| r.id.clone())
            .collect();
        let mut rules_of = |dir: Direction, rules: &[schema::Rule]| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let f = format!("{field}.{}[{i}]", dir.name());
                    let default_id = match &r.id {
                        Some(id) => id.clone(),
                        None => {
                            let id = rule_id::generated(&g.id, dir, r, |id| taken.contains(id));
                            taken.insert(id.clone());
                            id
                        }
                    };
                    self.rule(r, dir, &f, default_id, kind, refs)
                })
                .collect::<Vec<_>>()
        };
        let ingress = rules_of(Direction::Ingress, &g.ingress);
        let egress = rules_of(Direction::Egress, &g.egress);
        let mut ids = HashSet::new();
        for (dir, rules) in [(Direction::Ingress, &ingress), (Direction::Egress, &egress)] {
            for (i, rule) in rules.iter().enumerate() {
                if !ids.insert(rule.id.as_str()) {
                    self.error(
                        format!("{field}.{}[{i}].id", dir.name()),
                        format!("duplicate rule id {:?} in group {:?}", rule.id, g.id),
                    );
                }
            }
        }
        SecurityGroup {
            id: g.id.clone(),
            name: g.name.clone().unwrap_or_else(|| g.id.clone()),
            description: g.description.clone().unwrap_or_default(),
            kind,
            inner_access_accept,
            members,
            ingress,
            egress,
            deletion_protection: g.deletion_protection,
        }
    }
}
