//! The validated desired state: groups, rules and interface bindings
//! (SPEC §2). Values here are already checked; the compiler and the
//! dataplane trust them.

use std::{collections::HashMap, fmt, net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use sg_common::proto;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: DaemonSettings,
    pub groups: Vec<SecurityGroup>,
    pub interfaces: Vec<InterfaceBinding>,
    pub snapshot_policies: Vec<SnapshotPolicy>,
    /// `[datastore]` with `kind = "etcd"`; `None`: the file holds
    /// everything.
    pub datastore: Option<crate::fleet::FleetSettings>,
    /// Members published by the fleet's other hosts (their bound
    /// instances' addresses), by group.
    pub fleet_members: std::collections::BTreeMap<String, Vec<IpAddr>>,
}

impl Config {
    pub fn group(&self, id: &str) -> Option<&SecurityGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The groups an enabled snapshot policy covers, each with the longest
    /// retention among those policies (days), and the policies' ids.
    pub fn snapshot_coverage(&self) -> std::collections::BTreeMap<&str, (u32, Vec<&str>)> {
        let mut out = std::collections::BTreeMap::<&str, (u32, Vec<&str>)>::new();
        for p in self.snapshot_policies.iter().filter(|p| p.enabled) {
            for g in &p.groups {
                let entry = out.entry(g.as_str()).or_default();
                entry.0 = entry.0.max(p.retention_days);
                entry.1.push(p.id.as_str());
            }
        }
        out
    }
}

/// A `[[snapshot_policy]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPolicy {
    pub id: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub retention_days: u32,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// Idle timeout of sessions, and of established TCP connections.
    pub session_timeout_secs: u64,
    /// Idle timeout of half-open TCP sessions (no answer yet).
    pub syn_timeout_secs: u64,
    /// Idle timeout of closed TCP sessions (RST, or FIN both ways).
    pub tcp_closed_timeout_secs: u64,
    /// Entries of the answered session table; default
    /// `CONNTRACK_ENTRIES`, twice that when a binding is in hypervisor
    /// mode. The unanswered table holds a quarter of it
    /// (`dataplane::table_capacities`).
    pub session_table_size: u32,
    pub block_smtp_egress: bool,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub bpffs_dir: PathBuf,
    /// Built-in: IPv6 neighbour and router discovery and MLD (ICMPv6
    /// 130..=136, 143).
    pub builtin_neighbor_discovery: bool,
    /// Built-in: DHCP and DHCPv6 client exchanges.
    pub builtin_dhcp_client: bool,
    /// Built-in: ICMPv6 redirects (137); off by default.
    pub builtin_nd_redirects: bool,
    /// Built-in: frames that are not IP (ARP passes even when off).
    pub builtin_non_ip: bool,
    /// Where to serve Prometheus metrics; `None` (default): nowhere.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// How the classifier is attached to interfaces.
    pub attach: AttachMode,
    /// `[daemon] region`: names the files `sgctl group export` writes
    /// (ECS's region id); default `local`.
    pub region: String,
    /// From a rule change to the snapshot of the rules before it.
    pub snapshot_delay_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            session_timeout_secs: sg_common::SESSION_TIMEOUT_SECS,
            syn_timeout_secs: sg_common::SYN_TIMEOUT_SECS,
            tcp_closed_timeout_secs: sg_common::TCP_CLOSED_TIMEOUT_SECS,
            session_table_size: sg_common::CONNTRACK_ENTRIES,
            block_smtp_egress: true,
            state_dir: "/var/lib/sg".into(),
            runtime_dir: "/run/sg".into(),
            bpffs_dir: "/sys/fs/bpf/sg".into(),
            builtin_neighbor_discovery: true,
            builtin_dhcp_client: true,
            builtin_nd_redirects: false,
            builtin_non_ip: true,
            metrics_address: None,
            attach: AttachMode::Auto,
            region: "local".into(),
            snapshot_delay_secs: crate::config::limits::SNAPSHOT_DELAY_DEFAULT_SECS,
        }
    }
}

impl DaemonSettings {
    /// The idle timeouts by session state, as the kernel reads them.
    pub fn session_timeouts(&self) -> sg_common::SessionTimeouts {
        let ns = |secs: u64| secs.saturating_mul(1_000_000_000);
        sg_common::SessionTimeouts {
            established_ns: ns(self.session_timeout_secs),
            half_open_ns: ns(self.syn_timeout_secs),
            closed_ns: ns(self.tcp_closed_timeout_secs),
        }
    }
}

/// `[daemon] attach`: how the classifier is hooked to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// TCX where the kernel has it (6.6 and later), else classic TC.
    Auto,
    /// TCX links (kernel 6.6 and later), pinned.
    Tcx,
    /// A clsact qdisc and a direct-action `bpf` filter (netlink).
    Tc,
}

impl AttachMode {
    pub const ALL: [AttachMode; 3] = [AttachMode::Auto, AttachMode::Tcx, AttachMode::Tc];

    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Tcx => "tcx",
            AttachMode::Tc => "tc",
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupType {
    Basic,
    Enterprise,
}

impl GroupType {
    /// How many private addresses a group of this type holds at most.
    pub fn max_addresses(self) -> usize {
        match self {
            GroupType::Basic => crate::config::limits::MAX_ADDRESSES_BASIC_GROUP,
            GroupType::Enterprise => crate::config::limits::MAX_ADDRESSES_ENTERPRISE_GROUP,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupType::Basic => "basic",
            GroupType::Enterprise => "enterprise",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    // Declared first: at equal priority a drop comes before an accept.
    Drop,
    Accept,
}

/// A rule's direction, seen from the instance: the one `Direction` of the
/// project, shared with the kernel.
pub use sg_common::Direction;

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    pub kind: GroupType,
    /// Basic groups: members reach each other unless this is false.
    pub inner_access_accept: bool,
    /// Private addresses of members on other hosts.
    pub members: Vec<IpNet>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub deletion_protection: bool,
}

impl SecurityGroup {
    pub fn rules(&self, dir: Direction) -> &[Rule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// IANA protocol number, or every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    All,
    Number(u8),
}

impl Protocol {
    pub const ICMP: u8 = proto::ICMP;
    pub const TCP: u8 = proto::TCP;
    pub const UDP: u8 = proto::UDP;
    pub const GRE: u8 = proto::GRE;
    pub const ICMPV6: u8 = proto::ICMPV6;

    /// TCP and UDP rules carry a port range; every other protocol `-1/-1`.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Number(n) if proto::has_ports(n))
    }

    pub fn matches(self, proto: u8) -> bool {
        match self {
            Protocol::All => true,
            Protocol::Number(n) => n == proto,
        }
    }
}

/// The name of the protocol table, else the number.
impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::All => f.write_str("all"),
            Protocol::Number(n) => match proto::name(*n) {
                Some(name) => f.write_str(name),
                None => write!(f, "{n}"),
            },
        }
    }
}

/// Inclusive port range; `0..=65535` stands for `-1/-1` (no port match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        start: 0,
        end: u16::MAX,
    };

    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ANY {
            f.write_str("-1/-1")
        } else {
            write!(f, "{}/{}", self.start, self.end)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Stable id: the file's, or `<group>/<direction>/<position>`.
    pub id: String,
    pub policy: Policy,
    /// 1..=100, smaller is stronger.
    pub priority: u8,
    pub protocol: Protocol,
    /// Destination port ranges of the packet (one, or a port list's).
    pub ports: Vec<PortRange>,
    /// Source port range of the packet (5-tuple rules); `ANY` otherwise.
    pub source_ports: PortRange,
    /// The remote side: source for ingress, destination for egress.
    pub peer: Peer,
    /// The local address (5-tuple rules): destination for ingress, source
    /// for egress; `None` matches every local address.
    pub local: Option<IpNet>,
    pub description: String,
}

/// Who a rule's remote side is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// One CIDR, or the entries of a prefix list.
    Cidrs(Vec<IpNet>),
    /// The members of a group: its listed `members` and the addresses of
    /// the local interfaces bound to it.
    Group(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    Instance,
    Hypervisor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceBinding {
    pub name: String,
    pub mode: BindingMode,
    /// Group ids in binding order (1..=10).
    pub security_groups: Vec<String>,
    pub addresses: Vec<IpAddr>,
    /// Hypervisor mode: the source MAC the instance is pinned to.
    pub mac: Option<[u8; 6]>,
}

/// Addresses known on this host: who is a member of which group, and each
/// bound interface's instance addresses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Addresses {
    members: HashMap<String, Vec<IpNet>>,
    instances: HashMap<String, Vec<IpAddr>>,
}

impl Addresses {
    /// A group's members are its listed `members` plus the instance
    /// addresses of every local interface bound to it, and of the fleet's
    /// other hosts' (`fleet_members`). `own` gives an
    /// instance-mode binding's addresses when the file lists none (the
    /// interface's own addresses).
    pub fn resolve(config: &Config, own: impl Fn(&InterfaceBinding) -> Vec<IpAddr>) -> Addresses {
        let mut out = Addresses::default();
        for binding in &config.interfaces {
            let addrs = if binding.addresses.is_empty() {
                own(binding)
            } else {
                binding.addresses.clone()
            };
            out.instances.insert(binding.name.clone(), addrs);
        }
        for group in &config.groups {
            let mut members = group.members.clone();
            for binding in &config.interfaces {
                if binding.security_groups.contains(&group.id) {
                    // A link-local address is no member of any group: the
                    // same fe80::/10 (or 169.254.0.0/16) address may be
                    // used on every other link, so it names no one host.
                    members.extend(
                        out.instance(&binding.name)
                            .iter()
                            .filter(|a| !is_link_local(a))
                            .map(|a| IpNet::from(*a)),
                    );
                }
            }
            // Instances bound on the fleet's other hosts.
            let elsewhere = config.fleet_members.get(&group.id).into_iter().flatten();
            members.extend(
                elsewhere
                    .filter(|a| !is_link_local(a))
                    .map(|a| IpNet::from(*a)),
            );
            members.sort();
            members.dedup();
            out.members.insert(group.id.clone(), members);
        }
        out
    }

    /// Refuses groups that hold more addresses than their type allows,
    /// bound instances' addresses included (validation counts only the
    /// listed `members`).
    pub fn check_group_sizes(&self, config: &Config) -> Result<(), String> {
        let over: Vec<String> = config
            .groups
            .iter()
            .filter_map(|g| {
                let (n, max) = (self.members(&g.id).len(), g.kind.max_addresses());
                (n > max).then(|| {
                    format!(
                        "group {:?} would hold {n} addresses (members and bound instances' addresses); allowed: at most {max} for a group of type \"{}\"",
                        g.id,
                        g.kind.name()
                    )
                })
            })
            .collect();
        if over.is_empty() {
            Ok(())
        } else {
            Err(over.join("; "))
        }
    }

    /// The member addresses of a group (empty for an unknown group).
    pub fn members(&self, group: &str) -> &[IpNet] {
        self.members.get(group).map_or(&[], Vec::as_slice)
    }

    /// The instance addresses behind a bound interface (link-local ones
    /// included: they are its own, though of no group).
    pub fn instance(&self, ifname: &str) -> &[IpAddr] {
        self.instances.get(ifname).map_or(&[], Vec::as_slice)
    }
}

/// fe80::/10 or 169.254.0.0/16: unique on one link only.
pub fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_are_no_members() {
        let config = crate::config::parse(
            std::path::Path::new("t.toml"),
            "[[security_group]]\nid = \"sg-a\"\n[[interface]]\nname = \"eth0\"\nsecurity_groups = [\"sg-a\"]\n",
        )
        .unwrap();
        let own: Vec<IpAddr> = ["192.0.2.10", "169.254.7.1", "2001:db8::10", "fe80::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let addresses = Addresses::resolve(&config, |_| own.clone());
        let members: Vec<String> = addresses
            .members("sg-a")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(members, ["192.0.2.10/32", "2001:db8::10/128"]);
        assert_eq!(addresses.instance("eth0"), own);
    }

    /// Bound instances' addresses count toward a group's limit with its
    /// members.
    #[test]
    fn a_group_holds_at_most_its_types_number_of_addresses() {
        let members: Vec<String> = (0..5_999)
            .map(|i| format!("\"10.{}.{}.{}\"", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        let text = format!(
            "[[security_group]]\nid = \"sg-a\"\nmembers = [{}]\n[[interface]]\nname = \"eth0\"\nsecurity_groups = [\"sg-a\"]\n",
            members.join(", ")
        );
        let config = crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        let one: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        Addresses::resolve(&config, |_| one.clone())
            .check_group_sizes(&config)
            .unwrap();
        let two: Vec<IpAddr> = vec![one[0], "192.0.2.11".parse().unwrap()];
        let why = Addresses::resolve(&config, |_| two.clone())
            .check_group_sizes(&config)
            .unwrap_err();
        assert!(
            why.contains("group \"sg-a\" would hold 6001 addresses")
                && why.contains("at most 6000 for a group of type \"basic\""),
            "{why}"
        );
    }
}
