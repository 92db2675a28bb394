//! Where each shared object lives in etcd, under the configured prefix:
//!
//! ```text
//! <prefix>/v1/version                  written by every edit (its revision
//!                                      is what edits are checked against)
//! <prefix>/v1/groups/<id>              a security group with its rules (JSON)
//! <prefix>/v1/prefix-lists/<id>        a prefix list
//! <prefix>/v1/port-lists/<id>          a port list
//! <prefix>/v1/snapshot-policies/<id>   a snapshot policy
//! <prefix>/v1/hosts/<host_id>          a host's bindings, under its lease
//! ```
//!
//! One object a key: a rule change is one small event (the group's key),
//! and a host watching the prefix reads only what changed.

/// A parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Version,
    Group(String),
    PrefixList(String),
    PortList(String),
    SnapshotPolicy(String),
    Host(String),
}

/// The keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `<prefix>/v1/`.
    root: String,
}

/// A key's constructor from its id.
type MakeKey = fn(String) -> Key;

const KINDS: [(&str, MakeKey); 5] = [
    ("groups/", Key::Group),
    ("prefix-lists/", Key::PrefixList),
    ("port-lists/", Key::PortList),
    ("snapshot-policies/", Key::SnapshotPolicy),
    ("hosts/", Key::Host),
];

impl Layout {
    /// `prefix` as configured (`/sg`); a trailing `/` is ignored.
    pub fn new(prefix: &str) -> Layout {
        Layout {
            root: format!("{}/v1/", prefix.trim_end_matches('/')),
        }
    }

    /// Every key of sg's, for a range read or a watch.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn key(&self, key: &Key) -> String {
        let (kind, id) = match key {
            Key::Version => return format!("{}version", self.root),
            Key::Group(id) => ("groups/", id),
            Key::PrefixList(id) => ("prefix-lists/", id),
            Key::PortList(id) => ("port-lists/", id),
            Key::SnapshotPolicy(id) => ("snapshot-policies/", id),
            Key::Host(id) => ("hosts/", id),
        };
        format!("{}{kind}{id}", self.root)
    }

    /// The key's meaning; `None` for keys not of this layout.
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.root)?;
        if rest == "version" {
            return Some(Key::Version);
        }
        KINDS.iter().find_map(|(kind, make)| {
            let id = rest.strip_prefix(kind)?;
            (!id.is_empty() && !id.contains('/')).then(|| make(id.to_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_foreign_keys_are_ignored() {
        let layout = Layout::new("/sg/");
        for key in [
            Key::Version,
            Key::Group("sg-web".into()),
            Key::PrefixList("pl-office".into()),
            Key::PortList("prl-web".into()),
            Key::SnapshotPolicy("daily".into()),
            Key::Host("hv-07".into()),
        ] {
            let text = layout.key(&key);
            assert!(text.starts_with("/sg/v1/"), "{text}");
            assert_eq!(layout.parse(text.as_bytes()), Some(key));
        }
        for foreign in [
            "/sg/v2/groups/sg-web",
            "/sgx/v1/groups/sg-web",
            "/sg/v1/groups/",
            "/sg/v1/groups/a/b",
            "/sg/v1/other/x",
        ] {
            assert_eq!(layout.parse(foreign.as_bytes()), None, "{foreign}");
        }
    }
}
