//! Checking a whole document and building the model from it (SPEC §2, §4,
//! §7), one module per object: `daemon`, `datastore`, `lists`, `group`, `rule`,
//! `binding`, `snapshot`, and `text` for ids, names and descriptions. Every problem
//! is collected (none stops the others from being found), each with its field path and the allowed values; a
//! document with any problem yields no `Config`.

mod binding;
mod daemon;
mod datastore;
mod group;
mod lists;
mod rule;
mod snapshot;
mod text;

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;

use super::{errors::Problem, schema::Document};
use crate::model::{Config, PortRange};

/// Checks `doc` and builds its model, or says every problem.
pub fn document(doc: &Document) -> Result<Config, Vec<Problem>> {
    let mut v = Validator::default();
    let config = v.document(doc);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(v.problems)
    }
}

/// What rules may refer to: lists and groups, by id.
struct Refs {
    prefix_lists: HashMap<String, NamedList<IpNet>>,
    port_lists: HashMap<String, NamedList<PortRange>>,
    group_ids: HashSet<String>,
    /// The ids of enterprise groups, which no rule may name (seed 002).
    enterprise_groups: HashSet<String>,
}

/// `max_entries` of every list, by id: what a rule naming the list counts
/// toward the quota.
fn list_sizes<T>(lists: &HashMap<String, NamedList<T>>) -> HashMap<&str, usize> {
    lists
        .iter()
        .map(|(id, l)| (id.as_str(), l.max_entries))
        .collect()
}

/// A validated prefix list or port list.
struct NamedList<T> {
    max_entries: usize,
    entries: Vec<T>,
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
    /// The groups live in etcd (a fleet host's file): bindings name
    /// groups this document does not have, checked once the shared state
    /// is read.
    groups_elsewhere: bool,
}

impl Validator {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
            at: None,
        });
    }

    /// A problem of `field` that a file shows at `at`.
    fn error_at(
        &mut self,
        field: impl Into<String>,
        at: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
            at: Some(at.into()),
        });
    }

    fn document(&mut self, doc: &Document) -> Config {
        let daemon = self.daemon(doc.daemon.as_ref());
        let datastore = self.datastore(doc);
        let refs = Refs {
            prefix_lists: self.prefix_lists(&doc.prefix_list),
            port_lists: self.port_lists(&doc.port_list),
            group_ids: doc.security_group.iter().map(|g| g.id.clone()).collect(),
            enterprise_groups: doc
                .security_group
                .iter()
                .filter(|g| g.kind.as_deref() == Some("enterprise"))
                .map(|g| g.id.clone())
                .collect(),
        };
        let mut group_ids = HashSet::new();
        let mut groups = Vec::new();
        for (i, g) in doc.security_group.iter().enumerate() {
            let field = format!("security_group[{i}]");
            if !group_ids.insert(g.id.as_str()) {
                self.error(
                    format!("{field}.id"),
                    format!("duplicate group id {:?}", g.id),
                );
            }
            groups.push(self.group(g, &field, &refs));
        }
        let interfaces: Vec<_> = doc
            .interface
            .iter()
            .enumerate()
            .map(|(i, b)| self.binding(b, &format!("interface[{i}]"), &groups, doc, &refs))
            .collect();
        let mut daemon = daemon;
        let size_given = doc
            .daemon
            .as_ref()
            .is_some_and(|d| d.session_table_size.is_some());
        if !size_given
            && interfaces.iter().any(|b: &crate::model::InterfaceBinding| {
                b.mode == crate::model::BindingMode::Hypervisor
            })
        {
            daemon.session_table_size = crate::config::limits::SESSION_TABLE_SIZE_HYPERVISOR;
        }
        self.instance_addresses_unique(&interfaces);
        let mut names = HashSet::new();
        for (i, b) in doc.interface.iter().enumerate() {
            if !names.insert(b.name.as_str()) {
                self.error(
                    format!("interface[{i}].name"),
                    format!(
                        "interface {:?} is bound twice; give each interface one [[interface]] with all its groups",
                        b.name
                    ),
                );
            }
        }
        let snapshot_policies = self.snapshot_policies(&doc.snapshot_policy, &refs.group_ids);
        Config {
            daemon,
            groups,
            interfaces,
            snapshot_policies,
            datastore,
            fleet_members: Default::default(),
        }
    }
}
