//! What the shared store holds, as this host last read it: the shared
//! objects by id, every host's published bindings, and the revisions they
//! are at; built from key-value pairs and changed by watch events.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::keys::{Key, Layout};
use crate::config::schema::{Document, Group, List, SnapshotPolicy};

/// One host's bindings, as it publishes them (under its lease).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host_id: String,
    pub bindings: Vec<PublishedBinding>,
}

/// A bound interface of a host: its groups and instance addresses (the
/// addresses resolved on that host, so that other hosts need not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedBinding {
    pub interface: String,
    pub security_groups: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

/// The shared objects and the hosts, at `revision`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedView {
    /// The store's revision this view is at.
    pub revision: i64,
    /// The etcd cluster it was read from: revisions compare within one.
    #[serde(default)]
    pub cluster_id: u64,
    /// The revision of the last edit (the version key's `mod_revision`;
    /// 0: none yet). Edits are checked against it.
    pub version: i64,
    pub prefix_lists: BTreeMap<String, List>,
    pub port_lists: BTreeMap<String, List>,
    pub groups: BTreeMap<String, Group>,
    pub snapshot_policies: BTreeMap<String, SnapshotPolicy>,
    pub hosts: BTreeMap<String, HostRecord>,
    /// Keys whose values do not read as their object, each with why
    /// (written by something other than sgd); left out of the view.
    #[serde(default)]
    pub unreadable: BTreeMap<String, String>,
}

impl SharedView {
    /// A view from a full read of the prefix.
    pub fn from_pairs<'a>(
        layout: &Layout,
        revision: i64,
        pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8], i64)>,
    ) -> SharedView {
        let mut view = SharedView {
            revision,
            ..SharedView::default()
        };
        for (key, value, mod_revision) in pairs {
            view.put(layout, key, value, mod_revision);
        }
        view
    }

    /// A key written (`mod_revision`: the write's revision).
    pub fn put(&mut self, layout: &Layout, key: &[u8], value: &[u8], mod_revision: i64) {
        let Some(parsed) = layout.parse(key) else {
            return;
        };
        let name = String::from_utf8_lossy(key).into_owned();
        self.unreadable.remove(&name);
        let result = match parsed {
            Key::Version => {
                self.version = mod_revision;
                Ok(())
            }
            Key::Group(id) => {
                read(value, &id, |g: &Group| &g.id).map(|g| drop(self.groups.insert(id, g)))
            }
            Key::PrefixList(id) => {
                read(value, &id, |l: &List| &l.id).map(|l| drop(self.prefix_lists.insert(id, l)))
            }
            Key::PortList(id) => {
                read(value, &id, |l: &List| &l.id).map(|l| drop(self.port_lists.insert(id, l)))
            }
            Key::SnapshotPolicy(id) => read(value, &id, |p: &SnapshotPolicy| &p.id)
                .map(|p| drop(self.snapshot_policies.insert(id, p))),
            Key::Host(id) => read(value, &id, |h: &HostRecord| &h.host_id)
                .map(|h| drop(self.hosts.insert(id, h))),
        };
        if let Err(why) = result {
            self.unreadable.insert(name, why);
        }
    }

    /// A key deleted (or its lease expired).
    pub fn delete(&mut self, layout: &Layout, key: &[u8]) {
        let Some(parsed) = layout.parse(key) else {
            return;
        };
        self.unreadable
            .remove(&String::from_utf8_lossy(key).into_owned());
        match parsed {
            Key::Version => self.version = 0,
            Key::Group(id) => drop(self.groups.remove(&id)),
            Key::PrefixList(id) => drop(self.prefix_lists.remove(&id)),
            Key::PortList(id) => drop(self.port_lists.remove(&id)),
            Key::SnapshotPolicy(id) => drop(self.snapshot_policies.remove(&id)),
            Key::Host(id) => drop(self.hosts.remove(&id)),
        }
    }

    /// The shared objects as a document (no `[daemon]`, no interfaces).
    pub fn document(&self) -> Document {
        Document {
            daemon: None,
            datastore: None,
            prefix_list: self.prefix_lists.values().cloned().collect(),
            port_list: self.port_lists.values().cloned().collect(),
            security_group: self.groups.values().cloned().collect(),
            interface: Vec::new(),
            snapshot_policy: self.snapshot_policies.values().cloned().collect(),
        }
    }

    /// Whether the store holds no shared object (first-time setup).
    pub fn is_empty(&self) -> bool {
        self.version == 0
            && self.groups.is_empty()
            && self.prefix_lists.is_empty()
            && self.port_lists.is_empty()
            && self.snapshot_policies.is_empty()
    }
}

/// A value as its object, which must carry its key's id.
fn read<T: serde::de::DeserializeOwned>(
    value: &[u8],
    id: &str,
    id_of: impl Fn(&T) -> &String,
) -> Result<T, String> {
    let object: T = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    match id_of(&object) == id {
        true => Ok(object),
        false => Err(format!("its id {:?} is not its key's", id_of(&object))),
    }
}

/// One key's change in an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: String },
    Delete { key: String },
}

/// The writes that turn the shared objects of `from` into those of `to`:
/// only the objects that differ (one group's change is one key).
pub fn writes(layout: &Layout, from: &Document, to: &Document) -> Vec<Write> {
    let mut out = Vec::new();
    diff_objects(&mut out, &from.security_group, &to.security_group, |g| {
        layout.key(&Key::Group(g.id.clone()))
    });
    diff_objects(&mut out, &from.prefix_list, &to.prefix_list, |l| {
        layout.key(&Key::PrefixList(l.id.clone()))
    });
    diff_objects(&mut out, &from.port_list, &to.port_list, |l| {
        layout.key(&Key::PortList(l.id.clone()))
    });
    diff_objects(&mut out, &from.snapshot_policy, &to.snapshot_policy, |p| {
        layout.key(&Key::SnapshotPolicy(p.id.clone()))
    });
    out
}

fn diff_objects<T: PartialEq + Serialize>(
    out: &mut Vec<Write>,
    from: &[T],
    to: &[T],
    key: impl Fn(&T) -> String,
) {
    let from: BTreeMap<String, &T> = from.iter().map(|o| (key(o), o)).collect();
    let to: BTreeMap<String, &T> = to.iter().map(|o| (key(o), o)).collect();
    for (k, object) in &to {
        if from.get(k) != Some(object) {
            out.push(Write::Put {
                key: k.clone(),
                value: serde_json::to_string(object).expect("objects serialise"),
            });
        }
    }
    for k in from.keys().filter(|k| !to.contains_key(*k)) {
        out.push(Write::Delete { key: k.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Rule;

    fn group(id: &str, ports: &[&str]) -> Group {
        Group {
            id: id.into(),
            ingress: (ports.iter())
                .map(|p| Rule {
                    id: Some(format!("{id}/{p}")),
                    port_range: Some(p.to_string()),
                    ..Rule::default()
                })
                .collect(),
            ..Group::default()
        }
    }

    #[test]
    fn an_edit_writes_only_the_objects_it_changed() {
        let layout = Layout::new("/sg");
        let from = Document {
            security_group: vec![group("sg-a", &["22/22"]), group("sg-b", &["80/80"])],
            ..Document::default()
        };
        let mut to = from.clone();
        to.security_group[1] = group("sg-b", &["80/80", "443/443"]);
        to.security_group.remove(0);
        to.security_group.push(group("sg-c", &[]));
        let w = writes(&layout, &from, &to);
        let keys: Vec<(&str, bool)> = (w.iter())
            .map(|w| match w {
                Write::Put { key, .. } => (key.as_str(), true),
                Write::Delete { key } => (key.as_str(), false),
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("/sg/v1/groups/sg-b", true),
                ("/sg/v1/groups/sg-c", true),
                ("/sg/v1/groups/sg-a", false)
            ]
        );
        assert!(writes(&layout, &to, &to).is_empty());
    }

    #[test]
    fn a_view_follows_puts_and_deletes_and_sets_aside_what_it_cannot_read() {
        let layout = Layout::new("/sg");
        let g = serde_json::to_string(&group("sg-a", &["22/22"])).unwrap();
        let key = layout.key(&Key::Group("sg-a".into()));
        let version = layout.key(&Key::Version);
        let mut view = SharedView::from_pairs(
            &layout,
            7,
            [
                (key.as_bytes(), g.as_bytes(), 5),
                (version.as_bytes(), &b""[..], 6),
                (&b"/sg/v1/groups/sg-x"[..], &b"{not json"[..], 4),
                (&b"/elsewhere/key"[..], &b"x"[..], 3),
            ],
        );
        assert_eq!((view.revision, view.version), (7, 6));
        assert_eq!(view.document().security_group.len(), 1);
        assert!(view.unreadable.contains_key("/sg/v1/groups/sg-x"));
        // A value naming another id than its key is refused too.
        view.put(&layout, b"/sg/v1/groups/sg-y", g.as_bytes(), 8);
        assert!(view.unreadable["/sg/v1/groups/sg-y"].contains("not its key's"));
        view.delete(&layout, key.as_bytes());
        view.delete(&layout, b"/sg/v1/groups/sg-x");
        assert!(view.groups.is_empty() && !view.unreadable.contains_key("/sg/v1/groups/sg-x"));
        assert!(!view.is_empty(), "the version key says edits were made");
    }
}
