//! The desired state's schema, written once: the config file (SPEC §7),
//! `state.toml`, `sgctl export` and the control API all carry these types.
//! They hold the values as written (text, numbers), so that a document
//! round-trips unchanged; [`super::validate`] turns one into the checked
//! model (`crate::model::Config`), and file errors are located afterwards
//! from the field path (see `errors.rs`), so no type here carries spans.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ConfigErrors;
use crate::model::{Config, Direction};

/// A config file (SPEC §7): everything `sgd` enforces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Host settings; always the config file's (see `crate::store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
    /// Where the shared objects live (SPEC §8); a host setting, like
    /// `[daemon]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<Datastore>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_list: Vec<List>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_list: Vec<List>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group: Vec<Group>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interface: Vec<Binding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_policy: Vec<SnapshotPolicy>,
}

/// `[daemon]`: host settings (SPEC §7, and the built-in switches).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Daemon {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_closed_timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_table_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_smtp_egress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpffs_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_neighbor_discovery: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_dhcp_client: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_nd_redirects: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin_non_ip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_delay_secs: Option<i64>,
}

/// `[datastore]` (SPEC §8): `kind = "file"` (the default: this file holds
/// everything) or `"etcd"` (groups, rules, lists and snapshot policies
/// shared by a fleet through etcd; this file keeps `[daemon]`,
/// `[datastore]` and the host's `[[interface]]` bindings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datastore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_secs: Option<i64>,
}

/// `[[prefix_list]]` or `[[port_list]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub max_entries: i64,
    #[serde(default)]
    pub entries: Vec<String>,
}

/// `[[security_group]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_access_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletion_protection: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Group {
    pub fn rules(&self, dir: Direction) -> &Vec<Rule> {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn rules_mut(&mut self, dir: Direction) -> &mut Vec<Rule> {
        match dir {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// A protocol as the file gives it: a name or an IANA number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a protocol: \"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"gre\", \"all\", or a number 0..=255"
)]
pub enum ProtocolValue {
    Name(String),
    Number(i64),
}

impl std::fmt::Display for ProtocolValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolValue::Name(s) => f.write_str(s),
            ProtocolValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// `[[security_group.ingress]]` / `[[security_group.egress]]`: the fields
/// of SPEC §2, as text, exactly as the file has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<ProtocolValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cidr_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_prefix_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_cidr_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_prefix_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Rule {
    /// The group this rule's remote side names, if any.
    pub fn group_reference(&self) -> Option<&str> {
        self.source_group_id
            .as_deref()
            .or(self.dest_group_id.as_deref())
    }

    /// The rule's remote side as written: a CIDR, a group or a prefix
    /// list.
    pub fn remote(&self, dir: Direction) -> Option<&str> {
        let (cidr, group, list) = match dir {
            Direction::Ingress => (
                &self.source_cidr_ip,
                &self.source_group_id,
                &self.source_prefix_list_id,
            ),
            Direction::Egress => (
                &self.dest_cidr_ip,
                &self.dest_group_id,
                &self.dest_prefix_list_id,
            ),
        };
        cidr.as_deref().or(group.as_deref()).or(list.as_deref())
    }

    /// The remote side's CIDR as written, when it is a CIDR.
    pub fn remote_cidr(&self, dir: Direction) -> Option<&str> {
        match dir {
            Direction::Ingress => self.source_cidr_ip.as_deref(),
            Direction::Egress => self.dest_cidr_ip.as_deref(),
        }
    }

    /// The local address of a 5-tuple rule, as written: the destination
    /// of an ingress rule, the source of an egress rule.
    pub fn local(&self, dir: Direction) -> Option<&str> {
        match dir {
            Direction::Ingress => self.dest_cidr_ip.as_deref(),
            Direction::Egress => self.source_cidr_ip.as_deref(),
        }
    }
}

/// `[[snapshot_policy]]`: which groups' rules are kept as snapshots, and
/// for how long (see `crate::snapshots`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// `[[interface]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Hypervisor mode: the instance's source MAC, `"02:00:00:00:00:07"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub security_groups: Vec<String>,
}

impl Document {
    /// Reads config text. Only the shape is checked here (the SPEC §7
    /// fields and their types); [`super::parse_document`] also validates.
    pub fn from_toml(text: &str) -> Result<Document, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The document as a config file, with `header` as leading comment
    /// lines.
    pub fn to_toml(&self, header: &str) -> Result<String, String> {
        let body = toml::to_string(self).map_err(|e| e.to_string())?;
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        if !header.is_empty() {
            out.push('\n');
        }
        out.push_str(&body);
        Ok(out)
    }

    /// The same checks as a config file's, without positions (the
    /// document has no text); `origin` names it in messages.
    pub fn validate(&self, origin: &Path) -> Result<Config, ConfigErrors> {
        super::validate(self, origin)
    }

    /// Writes the ids `config` (parsed from this document) gave its rules
    /// into the rules that have none, so that they stay the same when rules
    /// before them are removed.
    pub fn fill_rule_ids(&mut self, config: &Config) {
        for (doc, group) in self.security_group.iter_mut().zip(&config.groups) {
            for (rule, parsed) in doc.ingress.iter_mut().zip(&group.ingress) {
                rule.id.get_or_insert_with(|| parsed.id.clone());
            }
            for (rule, parsed) in doc.egress.iter_mut().zip(&group.egress) {
                rule.id.get_or_insert_with(|| parsed.id.clone());
            }
        }
    }

    /// Writes every address and CIDR in its canonical form
    /// (`2001:0db8::0001` is `2001:db8::1`), so that what is stored,
    /// exported and shown reads one way; text that is not an address is
    /// left for validation to refuse.
    pub fn canonical_addresses(&mut self) {
        let canonical = |text: &mut String| {
            if let Some(c) = super::values::canonical_cidr(text) {
                *text = c;
            }
        };
        self.prefix_list
            .iter_mut()
            .flat_map(|l| &mut l.entries)
            .for_each(canonical);
        for g in &mut self.security_group {
            g.members.iter_mut().for_each(canonical);
            for r in g.ingress.iter_mut().chain(&mut g.egress) {
                r.source_cidr_ip.iter_mut().for_each(canonical);
                r.dest_cidr_ip.iter_mut().for_each(canonical);
            }
        }
        self.interface
            .iter_mut()
            .flat_map(|b| &mut b.addresses)
            .for_each(canonical);
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.security_group.iter().find(|g| g.id == id)
    }

    pub fn group_mut(&mut self, id: &str) -> Option<&mut Group> {
        self.security_group.iter_mut().find(|g| g.id == id)
    }

    /// The objects, without the `[daemon]` table.
    pub fn objects_equal(&self, other: &Document) -> bool {
        self.prefix_list == other.prefix_list
            && self.port_list == other.port_list
            && self.security_group == other.security_group
            && self.interface == other.interface
            && self.snapshot_policy == other.snapshot_policy
    }
}
