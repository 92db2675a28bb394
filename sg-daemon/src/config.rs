//! Reading and validating the TOML file (SPEC §7, limits of SPEC §4).
//!
//! The file is first deserialised into `raw` structs that keep each value's
//! position, then checked as a whole. Every problem found is reported, each
//! naming the file, line, column, field path and the allowed values; a file
//! with any problem yields no `Config` at all, so nothing of it is applied.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use toml::Spanned;

use crate::model::{
    BindingMode, Config, DaemonSettings, Direction, GroupType, InterfaceBinding, Peer, Policy,
    PortRange, Protocol, Rule, SecurityGroup,
};

/// Limits of SPEC §4.
pub const MAX_GROUPS_PER_INTERFACE: usize = 10;
pub const MAX_RULES_PER_INTERFACE: usize = 1000;
pub const MAX_GROUP_REFERENCES_PER_GROUP: usize = 20;
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = 1..=100;
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Path of the offending field, e.g. `security_group[0].ingress[2].priority`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        file: path.to_owned(),
        text,
        errors: Vec::new(),
    };
    let raw: raw::File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            // serde stops at the first structural problem (syntax, unknown
            // field, wrong type); report it with its position.
            let span = e.span().unwrap_or(0..0);
            v.error(span, "(syntax)", e.message().to_string());
            return Err(ConfigErrors(v.errors));
        }
    };
    let config = v.file(raw);
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// What the file says, with positions, before any check.
mod raw {
    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub daemon: Option<Daemon>,
        #[serde(default)]
        pub prefix_list: Vec<Spanned<NamedList>>,
        #[serde(default)]
        pub port_list: Vec<Spanned<NamedList>>,
        #[serde(default)]
        pub security_group: Vec<Spanned<Group>>,
        #[serde(default)]
        pub interface: Vec<Spanned<Interface>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Daemon {
        pub session_timeout_secs: Option<Spanned<i64>>,
        pub block_smtp_egress: Option<bool>,
        pub state_dir: Option<Spanned<String>>,
        pub runtime_dir: Option<Spanned<String>>,
        pub bpffs_dir: Option<Spanned<String>>,
        pub builtin_neighbor_discovery: Option<bool>,
        pub builtin_dhcp_client: Option<bool>,
        pub metrics_address: Option<Spanned<String>>,
    }

    /// A `[[prefix_list]]` or a `[[port_list]]`: the same fields, with
    /// CIDRs or port ranges as entries.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct NamedList {
        pub id: Spanned<String>,
        // Informational only; accepted so that files may carry them.
        #[allow(dead_code)]
        pub name: Option<String>,
        #[allow(dead_code)]
        pub description: Option<String>,
        pub max_entries: Spanned<i64>,
        #[serde(default)]
        pub entries: Vec<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Group {
        pub id: Spanned<String>,
        pub name: Option<String>,
        pub description: Option<String>,
        #[serde(rename = "type")]
        pub kind: Option<Spanned<String>>,
        pub inner_access_policy: Option<Spanned<String>>,
        #[serde(default)]
        pub members: Vec<Spanned<String>>,
        #[serde(default)]
        pub deletion_protection: bool,
        #[serde(default)]
        pub ingress: Vec<Spanned<Rule>>,
        #[serde(default)]
        pub egress: Vec<Spanned<Rule>>,
    }

    /// A protocol is a name or a number.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Protocol {
        Name(String),
        Number(i64),
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub id: Option<Spanned<String>>,
        pub description: Option<String>,
        pub policy: Option<Spanned<String>>,
        pub priority: Option<Spanned<i64>>,
        pub ip_protocol: Option<Spanned<Protocol>>,
        pub port_range: Option<Spanned<String>>,
        pub port_range_list_id: Option<Spanned<String>>,
        pub source_cidr_ip: Option<Spanned<String>>,
        pub dest_cidr_ip: Option<Spanned<String>>,
        pub source_group_id: Option<Spanned<String>>,
        pub dest_group_id: Option<Spanned<String>>,
        pub source_prefix_list_id: Option<Spanned<String>>,
        pub dest_prefix_list_id: Option<Spanned<String>>,
        pub source_port_range: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Interface {
        pub name: Spanned<String>,
        pub mode: Option<Spanned<String>>,
        #[serde(default)]
        pub addresses: Vec<Spanned<String>>,
        pub security_groups: Spanned<Vec<Spanned<String>>>,
    }
}

/// What rules may refer to: lists and groups, by id.
struct Refs {
    prefix_lists: HashMap<String, NamedList<IpNet>>,
    port_lists: HashMap<String, NamedList<PortRange>>,
    group_ids: HashSet<String>,
}

/// A validated prefix list or port list, by id.
struct NamedList<T> {
    max_entries: usize,
    entries: Vec<T>,
}

struct Validator<'a> {
    file: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    fn file(&mut self, raw: raw::File) -> Config {
        let daemon = self.daemon(raw.daemon);
        let prefix_lists = self.lists(&raw.prefix_list, "prefix_list", "pl-", |e| {
            parse_cidr(e).ok_or("an IPv4 or IPv6 address or CIDR, e.g. 203.0.113.0/24")
        });
        let port_lists = self.lists(&raw.port_list, "port_list", "prl-", |e| {
            parse_port_range(e).ok_or("a port range \"start/end\" with 1 <= start <= end <= 65535")
        });
        let refs = Refs {
            prefix_lists,
            port_lists,
            group_ids: raw
                .security_group
                .iter()
                .map(|g| g.get_ref().id.get_ref().clone())
                .collect(),
        };
        let mut groups = Vec::new();
        let mut group_ids = HashSet::new();
        for (i, g) in raw.security_group.iter().enumerate() {
            let field = format!("security_group[{i}]");
            if !group_ids.insert(g.get_ref().id.get_ref().clone()) {
                let id = &g.get_ref().id;
                self.error(
                    id.span(),
                    format!("{field}.id"),
                    format!("duplicate group id {:?}", id.get_ref()),
                );
            }
            groups.push(self.group(g.get_ref(), &field, &refs));
        }
        let interfaces = raw
            .interface
            .iter()
            .enumerate()
            .map(|(i, b)| {
                self.interface(
                    b,
                    &format!("interface[{i}]"),
                    &groups,
                    &refs,
                    &raw.security_group,
                )
            })
            .collect::<Vec<_>>();
        let mut names = HashSet::new();
        for (i, b) in raw.interface.iter().enumerate() {
            let name = &b.get_ref().name;
            if !names.insert(name.get_ref().clone()) {
                self.error(name.span(), format!("interface[{i}].name"), format!("interface {:?} is bound twice; give each interface one [[interface]] with all its groups", name.get_ref()));
            }
        }
        Config {
            daemon,
            groups,
            interfaces,
        }
    }

    fn daemon(&mut self, raw: Option<raw::Daemon>) -> DaemonSettings {
        let mut d = DaemonSettings::default();
        let Some(raw) = raw else { return d };
        if let Some(t) = raw.session_timeout_secs {
            match u64::try_from(*t.get_ref()) {
                Ok(secs) if (1..=86_400 * 7).contains(&secs) => d.session_timeout_secs = secs,
                _ => self.error(
                    t.span(),
                    "daemon.session_timeout_secs",
                    format!(
                        "{} is out of range; allowed: 1..=604800 seconds (default 910)",
                        t.get_ref()
                    ),
                ),
            }
        }
        d.block_smtp_egress = raw.block_smtp_egress.unwrap_or(d.block_smtp_egress);
        d.allow_neighbor_discovery = raw.builtin_neighbor_discovery.unwrap_or(true);
        d.allow_dhcp_client = raw.builtin_dhcp_client.unwrap_or(true);
        if let Some(a) = raw.metrics_address {
            match a.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) => d.metrics_address = Some(addr),
                Err(_) => self.error(
                    a.span(),
                    "daemon.metrics_address",
                    format!("{:?} is not valid; allowed: an address and port such as \"127.0.0.1:9630\" or \"[::1]:9630\"", a.get_ref()),
                ),
            }
        }
        for (value, name, slot) in [
            (raw.state_dir, "daemon.state_dir", &mut d.state_dir),
            (raw.runtime_dir, "daemon.runtime_dir", &mut d.runtime_dir),
            (raw.bpffs_dir, "daemon.bpffs_dir", &mut d.bpffs_dir),
        ] {
            if let Some(v) = value {
                if Path::new(v.get_ref()).is_absolute() {
                    *slot = PathBuf::from(v.get_ref());
                } else {
                    self.error(
                        v.span(),
                        name,
                        format!(
                            "{:?} is not an absolute path; allowed: an absolute directory path",
                            v.get_ref()
                        ),
                    );
                }
            }
        }
        d
    }

    /// Prefix lists and port lists: unique ids with the right prefix,
    /// `max_entries` >= the number of entries, valid entries.
    fn lists<T>(
        &mut self,
        raw: &[Spanned<raw::NamedList>],
        kind: &str,
        id_prefix: &str,
        parse_entry: impl Fn(&str) -> Result<T, &'static str>,
    ) -> HashMap<String, NamedList<T>> {
        let mut out = HashMap::new();
        for (i, l) in raw.iter().enumerate() {
            let field = format!("{kind}[{i}]");
            let raw::NamedList {
                id,
                max_entries: max,
                entries,
                ..
            } = l.get_ref();
            if !id.get_ref().starts_with(id_prefix) {
                self.error(
                    id.span(),
                    format!("{field}.id"),
                    format!("{:?} must start with {id_prefix:?}", id.get_ref()),
                );
            }
            let max_entries = match usize::try_from(*max.get_ref()) {
                Ok(m) if (1..=MAX_RULES_PER_INTERFACE).contains(&m) => m,
                _ => {
                    self.error(
                        max.span(),
                        format!("{field}.max_entries"),
                        format!("{} is out of range; allowed: 1..=1000", max.get_ref()),
                    );
                    1
                }
            };
            if entries.len() > max_entries {
                self.error(
                    max.span(),
                    format!("{field}.entries"),
                    format!(
                        "{} entries exceed max_entries = {max_entries}",
                        entries.len()
                    ),
                );
            }
            let mut parsed = Vec::new();
            for (j, e) in entries.iter().enumerate() {
                match parse_entry(e.get_ref()) {
                    Ok(v) => parsed.push(v),
                    Err(allowed) => self.error(
                        e.span(),
                        format!("{field}.entries[{j}]"),
                        format!("{:?} is not valid; allowed: {allowed}", e.get_ref()),
                    ),
                }
            }
            if out
                .insert(
                    id.get_ref().clone(),
                    NamedList {
                        max_entries,
                        entries: parsed,
                    },
                )
                .is_some()
            {
                self.error(
                    id.span(),
                    format!("{field}.id"),
                    format!("duplicate {kind} id {:?}", id.get_ref()),
                );
            }
        }
        out
    }

    fn group(&mut self, g: &raw::Group, field: &str, refs: &Refs) -> SecurityGroup {
        if g.id.get_ref().is_empty() {
            self.error(g.id.span(), format!("{field}.id"), "must not be empty");
        }
        let kind = match g.kind.as_ref().map(|k| (k.get_ref().as_str(), k.span())) {
            None | Some(("basic", _)) => GroupType::Basic,
            Some(("enterprise", _)) => GroupType::Enterprise,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("{field}.type"),
                    format!("{other:?} is not a group type; allowed: \"basic\", \"enterprise\""),
                );
                GroupType::Basic
            }
        };
        let inner_access_accept = match g
            .inner_access_policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None => kind == GroupType::Basic,
            Some((_, span)) if kind == GroupType::Enterprise => {
                self.error(
                    span,
                    format!("{field}.inner_access_policy"),
                    "enterprise groups have no intra-group policy; remove this field",
                );
                false
            }
            Some(("accept", _)) => true,
            Some(("drop", _)) => false,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("{field}.inner_access_policy"),
                    format!("{other:?} is not allowed; allowed: \"accept\", \"drop\""),
                );
                true
            }
        };
        let mut members = Vec::new();
        for (i, m) in g.members.iter().enumerate() {
            match parse_cidr(m.get_ref()) {
                Some(net) => members.push(net),
                None => self.error(
                    m.span(),
                    format!("{field}.members[{i}]"),
                    format!(
                        "{:?} is not an IP address; allowed: an IPv4 or IPv6 address or CIDR",
                        m.get_ref()
                    ),
                ),
            }
        }
        let rules_of = |v: &mut Self, dir: Direction, raws: &[Spanned<raw::Rule>]| {
            raws.iter()
                .enumerate()
                .map(|(i, r)| {
                    let f = format!("{field}.{}[{i}]", dir.name());
                    let default_id = format!("{}/{}/{}", g.id.get_ref(), dir.name(), i + 1);
                    v.rule(r, dir, &f, default_id, kind, refs)
                })
                .collect::<Vec<_>>()
        };
        let group_refs = g
            .ingress
            .iter()
            .chain(&g.egress)
            .filter(|r| {
                r.get_ref().source_group_id.is_some() || r.get_ref().dest_group_id.is_some()
            })
            .count();
        if group_refs > MAX_GROUP_REFERENCES_PER_GROUP {
            self.error(
                g.id.span(),
                field.to_string(),
                format!("{group_refs} rules reference a group; allowed: at most {MAX_GROUP_REFERENCES_PER_GROUP} per group"),
            );
        }
        let ingress = rules_of(self, Direction::Ingress, &g.ingress);
        let egress = rules_of(self, Direction::Egress, &g.egress);
        let mut ids = HashSet::new();
        for (rule, raw) in ingress
            .iter()
            .chain(&egress)
            .zip(g.ingress.iter().chain(&g.egress))
        {
            if !ids.insert(rule.id.clone()) {
                self.error(
                    raw.span(),
                    format!("{field}.id"),
                    format!(
                        "duplicate rule id {:?} in group {:?}",
                        rule.id,
                        g.id.get_ref()
                    ),
                );
            }
        }
        SecurityGroup {
            id: g.id.get_ref().clone(),
            name: g.name.clone().unwrap_or_else(|| g.id.get_ref().clone()),
            description: g.description.clone().unwrap_or_default(),
            kind,
            inner_access_accept,
            members,
            ingress,
            egress,
            deletion_protection: g.deletion_protection,
        }
    }

    fn rule(
        &mut self,
        spanned: &Spanned<raw::Rule>,
        dir: Direction,
        field: &str,
        default_id: String,
        kind: GroupType,
        refs: &Refs,
    ) -> Rule {
        let r = spanned.get_ref();
        let policy = match r.policy.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
            Some(("accept", _)) => Policy::Accept,
            Some(("drop", _)) => Policy::Drop,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("{field}.policy"),
                    format!("{other:?} is not a policy; allowed: \"accept\", \"drop\""),
                );
                Policy::Drop
            }
            None => {
                self.error(
                    spanned.span(),
                    format!("{field}.policy"),
                    "missing; allowed: \"accept\", \"drop\"",
                );
                Policy::Drop
            }
        };
        let priority = match &r.priority {
            None => 1,
            Some(p) if PRIORITY_RANGE.contains(p.get_ref()) => *p.get_ref() as u8,
            Some(p) => {
                self.error(
                    p.span(),
                    format!("{field}.priority"),
                    format!(
                        "{} is out of range; allowed: 1..=100 (1 is the strongest)",
                        p.get_ref()
                    ),
                );
                1
            }
        };
        let protocol = match &r.ip_protocol {
            Some(p) => match parse_protocol(p.get_ref()) {
                Some(proto) => proto,
                None => {
                    let shown = match p.get_ref() {
                        raw::Protocol::Name(s) => format!("{s:?}"),
                        raw::Protocol::Number(n) => n.to_string(),
                    };
                    self.error(p.span(), format!("{field}.ip_protocol"), format!("{shown} is not a protocol; allowed: \"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"gre\", \"all\", or a number 0..=255"));
                    Protocol::All
                }
            },
            None => {
                self.error(spanned.span(), format!("{field}.ip_protocol"), "missing; allowed: \"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"gre\", \"all\", or a number 0..=255");
                Protocol::All
            }
        };
        let ports = self.rule_ports(r, field, protocol, &refs.port_lists, spanned.span());

        // The remote side: source for ingress, destination for egress; the
        // other side's address is the local address of a 5-tuple rule.
        let (remote_cidr, remote_group, remote_pl, local_cidr, remote_name, local_name) = match dir
        {
            Direction::Ingress => (
                &r.source_cidr_ip,
                &r.source_group_id,
                &r.source_prefix_list_id,
                &r.dest_cidr_ip,
                "source",
                "dest_cidr_ip",
            ),
            Direction::Egress => (
                &r.dest_cidr_ip,
                &r.dest_group_id,
                &r.dest_prefix_list_id,
                &r.source_cidr_ip,
                "dest",
                "source_cidr_ip",
            ),
        };
        let local = local_cidr.as_ref().and_then(|c| {
            let net = parse_cidr(c.get_ref());
            if net.is_none() {
                self.error(
                    c.span(),
                    format!("{field}.{local_name}"),
                    format!("{:?} is not valid; allowed: an IPv4 or IPv6 address or CIDR (the local address of a 5-tuple rule)", c.get_ref()),
                );
            }
            net
        });
        let source_ports = r.source_port_range.as_ref().and_then(|p| {
            if !protocol.has_ports() {
                self.error(
                    p.span(),
                    format!("{field}.source_port_range"),
                    format!("only tcp and udp rules have ports, not {protocol}"),
                );
                return None;
            }
            let range = parse_port_range(p.get_ref());
            if range.is_none() {
                self.error(
                    p.span(),
                    format!("{field}.source_port_range"),
                    format!(
                        "{:?} is not valid; allowed: \"start/end\" with 1 <= start <= end <= 65535",
                        p.get_ref()
                    ),
                );
            }
            range
        });
        let given = [
            remote_cidr.is_some(),
            remote_group.is_some(),
            remote_pl.is_some(),
        ];
        let peer = match (remote_cidr, remote_group, remote_pl) {
            _ if given.iter().filter(|g| **g).count() > 1 => {
                self.error(spanned.span(), format!("{field}.{remote_name}_cidr_ip"), format!("give exactly one of {remote_name}_cidr_ip, {remote_name}_group_id, {remote_name}_prefix_list_id"));
                Peer::Cidrs(Vec::new())
            }
            (Some(c), _, _) => match parse_cidr(c.get_ref()) {
                Some(net) => Peer::Cidrs(vec![net]),
                None => {
                    self.error(c.span(), format!("{field}.{remote_name}_cidr_ip"), format!("{:?} is not valid; allowed: an IPv4 or IPv6 address or CIDR, e.g. 0.0.0.0/0, 198.51.100.7, 2001:db8::/32", c.get_ref()));
                    Peer::Cidrs(Vec::new())
                }
            },
            (_, Some(g), _) => {
                if kind == GroupType::Enterprise {
                    self.error(g.span(), format!("{field}.{remote_name}_group_id"), "enterprise groups cannot reference groups in rules (SPEC §3.4); use a CIDR or a prefix list");
                } else if !refs.group_ids.contains(g.get_ref()) {
                    self.error(
                        g.span(),
                        format!("{field}.{remote_name}_group_id"),
                        format!("no [[security_group]] with id {:?}", g.get_ref()),
                    );
                }
                Peer::Group(g.get_ref().clone())
            }
            (_, _, Some(pl)) => match refs.prefix_lists.get(pl.get_ref()) {
                Some(list) => Peer::Cidrs(list.entries.clone()),
                None => {
                    self.error(
                        pl.span(),
                        format!("{field}.{remote_name}_prefix_list_id"),
                        format!("no [[prefix_list]] with id {:?}", pl.get_ref()),
                    );
                    Peer::Cidrs(Vec::new())
                }
            },
            (None, None, None) => {
                self.error(spanned.span(), format!("{field}.{remote_name}_cidr_ip"), format!("missing; a rule needs one of {remote_name}_cidr_ip, {remote_name}_group_id, {remote_name}_prefix_list_id"));
                Peer::Cidrs(Vec::new())
            }
        };
        let id = match &r.id {
            Some(id) if !id.get_ref().is_empty() => id.get_ref().clone(),
            Some(id) => {
                self.error(
                    id.span(),
                    format!("{field}.id"),
                    "must not be empty (leave it out to get a generated id)",
                );
                default_id
            }
            None => default_id,
        };
        Rule {
            id,
            policy,
            priority,
            protocol,
            ports,
            source_ports: source_ports.unwrap_or(PortRange::ANY),
            peer,
            local,
            description: r.description.clone().unwrap_or_default(),
        }
    }

    fn rule_ports(
        &mut self,
        r: &raw::Rule,
        field: &str,
        protocol: Protocol,
        port_lists: &HashMap<String, NamedList<PortRange>>,
        rule_span: Range<usize>,
    ) -> Vec<PortRange> {
        const ALLOWED: &str = "\"start/end\" with 1 <= start <= end <= 65535 for tcp and udp, \"-1/-1\" for other protocols";
        match (&r.port_range, &r.port_range_list_id) {
            (Some(p), Some(_)) => {
                self.error(
                    p.span(),
                    format!("{field}.port_range"),
                    "give port_range or port_range_list_id, not both",
                );
                vec![PortRange::ANY]
            }
            (Some(p), None) if protocol.has_ports() => match parse_port_range(p.get_ref()) {
                Some(range) => vec![range],
                None => {
                    self.error(
                        p.span(),
                        format!("{field}.port_range"),
                        format!(
                            "{:?} is not valid for {protocol}; allowed: {ALLOWED}",
                            p.get_ref()
                        ),
                    );
                    vec![PortRange::ANY]
                }
            },
            (Some(p), None) => {
                if p.get_ref().trim() != "-1/-1" {
                    self.error(
                        p.span(),
                        format!("{field}.port_range"),
                        format!(
                            "{:?} is not valid for {protocol}; allowed: {ALLOWED}",
                            p.get_ref()
                        ),
                    );
                }
                vec![PortRange::ANY]
            }
            (None, Some(id)) if protocol.has_ports() => match port_lists.get(id.get_ref()) {
                Some(list) => list.entries.clone(),
                None => {
                    self.error(
                        id.span(),
                        format!("{field}.port_range_list_id"),
                        format!("no [[port_list]] with id {:?}", id.get_ref()),
                    );
                    vec![PortRange::ANY]
                }
            },
            (None, Some(id)) => {
                self.error(
                    id.span(),
                    format!("{field}.port_range_list_id"),
                    format!("port lists apply to tcp and udp only, not {protocol}"),
                );
                vec![PortRange::ANY]
            }
            (None, None) if protocol.has_ports() => {
                self.error(
                    rule_span,
                    format!("{field}.port_range"),
                    format!("missing for {protocol}; allowed: {ALLOWED}"),
                );
                vec![PortRange::ANY]
            }
            (None, None) => vec![PortRange::ANY],
        }
    }

    fn interface(
        &mut self,
        spanned: &Spanned<raw::Interface>,
        field: &str,
        groups: &[SecurityGroup],
        refs: &Refs,
        raw_groups: &[Spanned<raw::Group>],
    ) -> InterfaceBinding {
        let b = spanned.get_ref();
        let name = b.name.get_ref();
        if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains(['/', ' ']) {
            self.error(b.name.span(), format!("{field}.name"), format!("{name:?} is not an interface name; allowed: 1..=15 characters, no '/' or spaces"));
        }
        let mode = match b.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("instance", _)) => BindingMode::Instance,
            Some(("hypervisor", _)) => BindingMode::Hypervisor,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("{field}.mode"),
                    format!("{other:?} is not a mode; allowed: \"instance\", \"hypervisor\""),
                );
                BindingMode::Instance
            }
        };
        let mut addresses = Vec::new();
        for (i, a) in b.addresses.iter().enumerate() {
            match a.get_ref().parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => self.error(
                    a.span(),
                    format!("{field}.addresses[{i}]"),
                    format!(
                        "{:?} is not an IP address; allowed: an IPv4 or IPv6 address",
                        a.get_ref()
                    ),
                ),
            }
        }
        if mode == BindingMode::Hypervisor && addresses.is_empty() {
            self.error(
                spanned.span(),
                format!("{field}.addresses"),
                "required in hypervisor mode: the instance's private IPs (its packets from any other source are dropped)",
            );
        }
        let list = b.security_groups.get_ref();
        if list.is_empty() || list.len() > MAX_GROUPS_PER_INTERFACE {
            self.error(
                b.security_groups.span(),
                format!("{field}.security_groups"),
                format!("{} groups; allowed: 1..=10 per interface", list.len()),
            );
        }
        let mut seen = HashSet::new();
        let mut kinds = HashSet::new();
        let mut quota = 0usize;
        for (i, id) in list.iter().enumerate() {
            let Some(group) = groups.iter().find(|g| &g.id == id.get_ref()) else {
                self.error(
                    id.span(),
                    format!("{field}.security_groups[{i}]"),
                    format!("no [[security_group]] with id {:?}", id.get_ref()),
                );
                continue;
            };
            if !seen.insert(id.get_ref()) {
                self.error(
                    id.span(),
                    format!("{field}.security_groups[{i}]"),
                    format!("group {:?} is listed twice", id.get_ref()),
                );
                continue;
            }
            kinds.insert(group.kind);
            let raw_group = raw_groups
                .iter()
                .find(|g| g.get_ref().id.get_ref() == id.get_ref());
            quota += raw_group.map_or(0, |g| {
                rule_quota(g.get_ref(), &refs.prefix_lists, &refs.port_lists)
            });
        }
        if kinds.len() > 1 {
            self.error(
                b.security_groups.span(),
                format!("{field}.security_groups"),
                "groups of one interface must all be basic or all enterprise",
            );
        }
        if quota > MAX_RULES_PER_INTERFACE {
            self.error(b.security_groups.span(), format!("{field}.security_groups"), format!("{quota} rules (ingress and egress, prefix and port lists counted at max_entries); allowed: at most 1000 per interface"));
        }
        InterfaceBinding {
            name: name.clone(),
            mode,
            security_groups: list.iter().map(|s| s.get_ref().clone()).collect(),
            addresses,
        }
    }
}

/// How many rules a group counts toward the per-interface quota (SPEC §2,
/// §4): one per rule, or a referenced list's `max_entries`.
fn rule_quota(
    g: &raw::Group,
    prefix_lists: &HashMap<String, NamedList<IpNet>>,
    port_lists: &HashMap<String, NamedList<PortRange>>,
) -> usize {
    g.ingress
        .iter()
        .chain(&g.egress)
        .map(|r| {
            let r = r.get_ref();
            let pl = [&r.source_prefix_list_id, &r.dest_prefix_list_id]
                .into_iter()
                .flatten()
                .filter_map(|id| prefix_lists.get(id.get_ref()))
                .map(|l| l.max_entries)
                .max();
            let prl = r
                .port_range_list_id
                .as_ref()
                .and_then(|id| port_lists.get(id.get_ref()))
                .map(|l| l.max_entries);
            pl.unwrap_or(1).max(prl.unwrap_or(1))
        })
        .sum()
}

/// An address or CIDR, normalised to its network (`10.0.0.5/8` is
/// `10.0.0.0/8`, `2408:180:0000::1` is `2408:180::1/128`).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// `"start/end"` with 1 <= start <= end <= 65535.
pub fn parse_port_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.trim().split_once('/')?;
    let start: u16 = a.trim().parse().ok()?;
    let end: u16 = b.trim().parse().ok()?;
    (start >= 1 && start <= end).then_some(PortRange { start, end })
}

fn parse_protocol(p: &raw::Protocol) -> Option<Protocol> {
    match p {
        raw::Protocol::Number(n) => u8::try_from(*n).ok().map(Protocol::Number),
        raw::Protocol::Name(name) => match name.to_ascii_lowercase().as_str() {
            "all" | "-1" => Some(Protocol::All),
            "tcp" => Some(Protocol::Number(Protocol::TCP)),
            "udp" => Some(Protocol::Number(Protocol::UDP)),
            "icmp" => Some(Protocol::Number(Protocol::ICMP)),
            "icmpv6" => Some(Protocol::Number(Protocol::ICMPV6)),
            "gre" => Some(Protocol::Number(Protocol::GRE)),
            other => other.parse::<u8>().ok().map(Protocol::Number),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(Path::new("sg.toml"), text)
            .expect_err("the file is invalid")
            .0
    }

    const GOOD: &str = r#"
[daemon]
session_timeout_secs = 910
block_smtp_egress = true
state_dir = "/var/lib/sg"
runtime_dir = "/run/sg"
bpffs_dir = "/sys/fs/bpf/sg"

[[prefix_list]]
id = "pl-office"
max_entries = 10
entries = ["203.0.113.0/24", "2001:db8:1::/48"]

[[port_list]]
id = "prl-web"
max_entries = 5
entries = ["80/80", "8000/8080"]

[[security_group]]
id = "sg-web"
type = "basic"
inner_access_policy = "accept"
members = ["198.51.100.20"]

  [[security_group.ingress]]
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"

  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range_list_id = "prl-web"
  source_prefix_list_id = "pl-office"

  [[security_group.egress]]
  policy = "drop"
  priority = 2
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#;

    #[test]
    fn the_spec_example_without_hypervisor_mode_is_valid() {
        let config = parse(Path::new("sg.toml"), GOOD).unwrap();
        let g = &config.groups[0];
        assert_eq!(g.ingress.len(), 2);
        assert_eq!(g.ingress[0].id, "sg-web/ingress/1");
        assert_eq!(g.ingress[1].ports.len(), 2);
        assert!(matches!(&g.ingress[1].peer, Peer::Cidrs(nets) if nets.len() == 2));
        assert_eq!(g.egress[0].priority, 2);
        assert_eq!(g.egress[0].ports, vec![PortRange::ANY]);
        assert_eq!(config.daemon.session_timeout_secs, 910);
    }

    #[test]
    fn every_problem_is_reported_with_line_field_and_allowed_values() {
        let text = GOOD
            .replace("priority = 2", "priority = 0")
            .replace("policy = \"drop\"", "policy = \"deny\"")
            .replace("\"80/80\"\n  source_cidr_ip", "\"0/80\"\n  source_cidr_ip");
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        let prio = errs
            .iter()
            .find(|e| e.field.ends_with("egress[0].priority"))
            .unwrap();
        assert_eq!(
            prio.line,
            text.lines()
                .position(|l| l.contains("priority = 0"))
                .unwrap()
                + 1
        );
        assert!(prio.message.contains("1..=100"), "{}", prio.message);
        let policy = errs
            .iter()
            .find(|e| e.field.ends_with("egress[0].policy"))
            .unwrap();
        assert!(policy.message.contains("\"accept\", \"drop\""));
        let port = errs
            .iter()
            .find(|e| e.field.ends_with("ingress[0].port_range"))
            .unwrap();
        assert!(port.to_string().starts_with("sg.toml:"), "{port}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let errs = errors(&GOOD.replace("block_smtp_egress", "block_smtp"));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("unknown field"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[0].line, 4);
    }

    #[test]
    fn ports_only_for_tcp_and_udp() {
        let text = GOOD.replace(
            "ip_protocol = \"all\"\n  port_range = \"-1/-1\"",
            "ip_protocol = \"icmp\"\n  port_range = \"1/2\"",
        );
        assert!(errors(&text)[0].field.ends_with("egress[0].port_range"));
        let text = GOOD.replace(
            "ip_protocol = \"tcp\"\n  port_range = \"80/80\"",
            "ip_protocol = \"tcp\"\n  port_range = \"-1/-1\"",
        );
        assert!(errors(&text)[0].field.ends_with("ingress[0].port_range"));
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            parse_cidr("2408:180:0000::1").unwrap().to_string(),
            "2408:180::1/128"
        );
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }

    #[test]
    fn bindings_are_checked() {
        let text = GOOD.replace(
            "security_groups = [\"sg-web\"]",
            "security_groups = [\"sg-web\", \"sg-web\", \"sg-nope\"]",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        let eleven: Vec<String> = (0..11).map(|i| format!("\"sg-{i}\"")).collect();
        let text = GOOD.replace("[\"sg-web\"]\n", &format!("[{}]\n", eleven.join(", ")));
        assert!(
            errors(&text)
                .iter()
                .any(|e| e.message.contains("allowed: 1..=10"))
        );
    }

    #[test]
    fn the_rule_quota_counts_lists_at_max_entries() {
        let text = GOOD.replace("max_entries = 10", "max_entries = 999");
        let errs = errors(&text);
        assert!(errs[0].message.contains("at most 1000"), "{errs:#?}");
    }

    #[test]
    fn groups_of_one_interface_share_a_type() {
        let text = format!(
            "{GOOD}\n[[security_group]]\nid = \"sg-ent\"\ntype = \"enterprise\"\n\n[[interface]]\nname = \"eth1\"\nsecurity_groups = [\"sg-web\", \"sg-ent\"]\n"
        );
        let errs = errors(&text);
        assert!(
            errs[0]
                .message
                .contains("must all be basic or all enterprise"),
            "{errs:#?}"
        );
    }
}
