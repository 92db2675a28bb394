//! Config files written as rows: one line of a test per rule, rendered into
//! the TOML that `sgd` reads.
//!
//! A rule row reads like a line of the seeds' rule tables: policy and
//! direction, protocol, port range, authorisation object.
//!
//! ```
//! use sg_tests::{Group, SERVER_IF, accept_in, drop_in, groups_on};
//! let web = Group::new("sg-web").rules([
//!     accept_in("tcp", "80/80", "0.0.0.0/0"),
//!     drop_in("tcp", "22/22", "sg-admin").priority(2),
//! ]);
//! let toml = groups_on(SERVER_IF, &[web]);
//! assert!(toml.contains("source_group_id = \"sg-admin\""));
//! assert!(toml.contains("security_groups = [\"sg-web\"]"));
//! ```
//!
//! Authorisation objects and port ranges are told apart by the prefixes
//! the spec gives their ids: a remote side starting with `sg-` is a group
//! (`source_group_id`), one starting with `pl-` a prefix list
//! (`source_prefix_list_id`), anything else a CIDR; a port range starting
//! with `prl-` is a port list (`port_range_list_id`).

use std::fmt::{self, Display, Write as _};

/// One rule of a security group: `[[security_group.ingress]]` or
/// `[[security_group.egress]]`. Made by [`accept_in`], [`drop_in`],
/// [`accept_out`] and [`drop_out`]; the optional fields by its methods.
#[derive(Debug, Clone)]
pub struct Rule {
    ingress: bool,
    policy: &'static str,
    protocol: String,
    ports: String,
    remote: String,
    id: Option<String>,
    priority: Option<u8>,
    source_ports: Option<String>,
    local: Option<String>,
}

fn rule(
    ingress: bool,
    policy: &'static str,
    protocol: &str,
    ports: &str,
    remote: &dyn Display,
) -> Rule {
    Rule {
        ingress,
        policy,
        protocol: protocol.to_owned(),
        ports: ports.to_owned(),
        remote: remote.to_string(),
        id: None,
        priority: None,
        source_ports: None,
        local: None,
    }
}

/// An ingress rule accepting `protocol` to `ports` from `remote` (a CIDR or
/// an address, a group `sg-…` or a prefix list `pl-…`).
pub fn accept_in(protocol: &str, ports: &str, remote: impl Display) -> Rule {
    rule(true, "accept", protocol, ports, &remote)
}

/// An ingress rule dropping `protocol` to `ports` from `remote`.
pub fn drop_in(protocol: &str, ports: &str, remote: impl Display) -> Rule {
    rule(true, "drop", protocol, ports, &remote)
}

/// An egress rule accepting `protocol` to `ports` of `remote`.
pub fn accept_out(protocol: &str, ports: &str, remote: impl Display) -> Rule {
    rule(false, "accept", protocol, ports, &remote)
}

/// An egress rule dropping `protocol` to `ports` of `remote`.
pub fn drop_out(protocol: &str, ports: &str, remote: impl Display) -> Rule {
    rule(false, "drop", protocol, ports, &remote)
}

impl Rule {
    /// `priority` (the file's default, 1, when not given).
    pub fn priority(mut self, priority: u8) -> Rule {
        self.priority = Some(priority);
        self
    }

    /// A stable rule `id`.
    pub fn id(mut self, id: &str) -> Rule {
        self.id = Some(id.to_owned());
        self
    }

    /// `source_port_range` (5-tuple rule).
    pub fn source_ports(mut self, range: &str) -> Rule {
        self.source_ports = Some(range.to_owned());
        self
    }

    /// The local address of a 5-tuple rule: `dest_cidr_ip` of an ingress
    /// rule, `source_cidr_ip` of an egress rule.
    pub fn local(mut self, cidr: &str) -> Rule {
        self.local = Some(cidr.to_owned());
        self
    }
}

impl Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dir, remote_side, local_side) = if self.ingress {
            ("ingress", "source", "dest")
        } else {
            ("egress", "dest", "source")
        };
        writeln!(f, "  [[security_group.{dir}]]")?;
        if let Some(id) = &self.id {
            writeln!(f, "  id = {id:?}")?;
        }
        writeln!(f, "  policy = {:?}", self.policy)?;
        if let Some(priority) = self.priority {
            writeln!(f, "  priority = {priority}")?;
        }
        writeln!(f, "  ip_protocol = {:?}", self.protocol)?;
        if self.ports.starts_with("prl-") {
            writeln!(f, "  port_range_list_id = {:?}", self.ports)?;
        } else {
            writeln!(f, "  port_range = {:?}", self.ports)?;
        }
        if let Some(range) = &self.source_ports {
            writeln!(f, "  source_port_range = {range:?}")?;
        }
        let kind = if self.remote.starts_with("sg-") {
            "group_id"
        } else if self.remote.starts_with("pl-") {
            "prefix_list_id"
        } else {
            "cidr_ip"
        };
        writeln!(f, "  {remote_side}_{kind} = {:?}", self.remote)?;
        if let Some(local) = &self.local {
            writeln!(f, "  {local_side}_cidr_ip = {local:?}")?;
        }
        Ok(())
    }
}

/// A `[[security_group]]` and its rules, in the order given.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    name: Option<String>,
    kind: Option<&'static str>,
    inner_access_policy: Option<&'static str>,
    members: Vec<String>,
    rules: Vec<Rule>,
}

impl Group {
    /// A group of the default type (basic), without members or rules.
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_owned(),
            name: None,
            kind: None,
            inner_access_policy: None,
            members: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// A group with `type = "basic"` written out.
    pub fn basic(id: &str) -> Group {
        Group {
            kind: Some("basic"),
            ..Group::new(id)
        }
    }

    /// A group with `type = "enterprise"`.
    pub fn enterprise(id: &str) -> Group {
        Group {
            kind: Some("enterprise"),
            ..Group::new(id)
        }
    }

    /// The group's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `name`.
    pub fn name(mut self, name: &str) -> Group {
        self.name = Some(name.to_owned());
        self
    }

    /// `inner_access_policy`: `"accept"` or `"drop"`.
    pub fn inner_access(mut self, policy: &'static str) -> Group {
        self.inner_access_policy = Some(policy);
        self
    }

    /// `members`: addresses of instances on other hosts.
    pub fn members<I>(mut self, members: I) -> Group
    where
        I: IntoIterator,
        I::Item: Display,
    {
        self.members
            .extend(members.into_iter().map(|m| m.to_string()));
        self
    }

    /// Appends `rules`, ingress and egress alike, in this order.
    pub fn rules(mut self, rules: impl IntoIterator<Item = Rule>) -> Group {
        self.rules.extend(rules);
        self
    }
}

impl Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n[[security_group]]\nid = {:?}", self.id)?;
        if let Some(name) = &self.name {
            writeln!(f, "name = {name:?}")?;
        }
        if let Some(kind) = self.kind {
            writeln!(f, "type = {kind:?}")?;
        }
        if let Some(policy) = self.inner_access_policy {
            writeln!(f, "inner_access_policy = {policy:?}")?;
        }
        if !self.members.is_empty() {
            writeln!(f, "members = {:?}", self.members)?;
        }
        self.rules.iter().try_for_each(|r| r.fmt(f))
    }
}

/// An `[[interface]]` binding.
#[derive(Debug, Clone)]
pub struct Interface {
    name: String,
    groups: Vec<String>,
    hypervisor_addresses: Option<Vec<String>>,
    mac: Option<String>,
}

/// Binds interface `name` to `groups`, in this order (instance mode).
pub fn interface(name: &str, groups: &[&str]) -> Interface {
    Interface {
        name: name.to_owned(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        hypervisor_addresses: None,
        mac: None,
    }
}

impl Interface {
    /// `mode = "hypervisor"` with the instance's `addresses`.
    pub fn hypervisor(mut self, addresses: &[&str]) -> Interface {
        self.hypervisor_addresses = Some(addresses.iter().map(|a| a.to_string()).collect());
        self
    }

    /// `mac`: the instance's source MAC, pinned (hypervisor mode).
    pub fn mac(mut self, mac: &str) -> Interface {
        self.mac = Some(mac.to_owned());
        self
    }
}

impl Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n[[interface]]\nname = {:?}", self.name)?;
        if let Some(addresses) = &self.hypervisor_addresses {
            writeln!(f, "mode = \"hypervisor\"\naddresses = {addresses:?}")?;
        }
        if let Some(mac) = &self.mac {
            writeln!(f, "mac = {mac:?}")?;
        }
        writeln!(f, "security_groups = {:?}", self.groups)
    }
}

/// `groups`, followed by one binding of interface `ifname` to all of them in
/// this order: the usual config of a test.
pub fn groups_on(ifname: &str, groups: &[Group]) -> String {
    let mut toml = String::new();
    for group in groups {
        write!(toml, "{group}").expect("writing to a String");
    }
    let ids: Vec<&str> = groups.iter().map(Group::id).collect();
    write!(toml, "{}", interface(ifname, &ids)).expect("writing to a String");
    toml
}

/// A `[[prefix_list]]` of CIDRs.
pub fn prefix_list<I>(id: &str, max_entries: u32, entries: I) -> String
where
    I: IntoIterator,
    I::Item: Display,
{
    list("prefix_list", id, max_entries, entries)
}

/// A `[[port_list]]` of port ranges.
pub fn port_list(id: &str, max_entries: u32, entries: &[&str]) -> String {
    list("port_list", id, max_entries, entries)
}

fn list<I>(table: &str, id: &str, max_entries: u32, entries: I) -> String
where
    I: IntoIterator,
    I::Item: Display,
{
    let entries: Vec<String> = entries.into_iter().map(|e| e.to_string()).collect();
    format!("\n[[{table}]]\nid = {id:?}\nmax_entries = {max_entries}\nentries = {entries:?}\n")
}

/// A `[[snapshot_policy]]` with `retention_days` covering `groups`. The
/// delay of a change's snapshot is a `[daemon]` key, written before the
/// first table: `format!("snapshot_delay_secs = 2\n{rest}")` (see
/// [`crate::DaemonDirs::config`]).
pub fn snapshot_policy(id: &str, retention_days: u32, groups: &[&str]) -> String {
    format!(
        "\n[[snapshot_policy]]\nid = {id:?}\nretention_days = {retention_days}\nsecurity_groups = {groups:?}\n"
    )
}
