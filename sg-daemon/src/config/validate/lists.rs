//! `[[prefix_list]]` and `[[port_list]]`: unique ids with their prefix,
//! `max_entries` within SPEC §4 and not below the entries, valid entries.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{NamedList, Validator};
use crate::{
    config::{
        limits::{LIST_ENTRIES_RANGE, PORT_LIST_ID_PREFIX, PREFIX_LIST_ID_PREFIX},
        schema::List,
        values::{cidr, parse_port_range},
    },
    model::PortRange,
};

impl Validator {
    pub(super) fn prefix_lists(&mut self, lists: &[List]) -> HashMap<String, NamedList<IpNet>> {
        self.lists(lists, "prefix_list", PREFIX_LIST_ID_PREFIX, |e| {
            cidr(e).map_err(|why| {
                format!("{why}; allowed: an IPv4 or IPv6 address or CIDR, e.g. 203.0.113.0/24")
            })
        })
    }

    pub(super) fn port_lists(&mut self, lists: &[List]) -> HashMap<String, NamedList<PortRange>> {
        self.lists(lists, "port_list", PORT_LIST_ID_PREFIX, |e| {
            parse_port_range(e).ok_or_else(|| {
                "is not valid; allowed: a port range \"start/end\" with 1 <= start <= end <= 65535"
                    .into()
            })
        })
    }

    fn lists<T>(
        &mut self,
        lists: &[List],
        kind: &str,
        id_prefix: &str,
        parse_entry: impl Fn(&str) -> Result<T, String>,
    ) -> HashMap<String, NamedList<T>> {
        let mut out = HashMap::new();
        for (i, l) in lists.iter().enumerate() {
            let field = format!("{kind}[{i}]");
            self.id(&format!("{field}.id"), &l.id, id_prefix);
            self.name(&format!("{field}.name"), l.name.as_deref());
            self.description(&format!("{field}.description"), l.description.as_deref());
            let max_entries = match usize::try_from(l.max_entries) {
                Ok(m) if LIST_ENTRIES_RANGE.contains(&m) => m,
                _ => {
                    self.error(
                        format!("{field}.max_entries"),
                        format!("{} is out of range; allowed: 1..=1000", l.max_entries),
                    );
                    1
                }
            };
            if l.entries.len() > max_entries {
                self.error_at(
                    format!("{field}.entries"),
                    format!("{field}.max_entries"),
                    format!(
                        "{} entries exceed max_entries = {max_entries}",
                        l.entries.len()
                    ),
                );
            }
            let mut parsed = Vec::new();
            for (j, e) in l.entries.iter().enumerate() {
                match parse_entry(e) {
                    Ok(v) => parsed.push(v),
                    Err(why) => self.error(format!("{field}.entries[{j}]"), format!("{e:?} {why}")),
                }
            }
            let list = NamedList {
                max_entries,
                entries: parsed,
            };
            if out.insert(l.id.clone(), list).is_some() {
                self.error(
                    format!("{field}.id"),
                    format!("duplicate {kind} id {:?}", l.id),
                );
            }
        }
        out
    }
}
