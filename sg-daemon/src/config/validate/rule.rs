//! One rule (SPEC §2): policy, priority, protocol, ports (a range or a
//! port list, only for tcp and udp), the remote side (exactly one of a
//! CIDR, a group or a prefix list), and a 5-tuple rule's local address and
//! source ports.

use std::collections::HashMap;

use super::{NamedList, Refs, Validator};
use crate::{
    config::{
        limits::PRIORITY_RANGE,
        schema,
        values::{self, PROTOCOLS_ALLOWED, cidr, parse_port_range, parse_protocol},
    },
    model::{Direction, GroupType, Peer, Policy, PortRange, Protocol, Rule},
};

const PORTS_ALLOWED: &str =
    "\"start/end\" with 1 <= start <= end <= 65535 for tcp and udp, \"-1/-1\" for other protocols";

/// The field of a 5-tuple rule's local address.
fn local_field(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "dest_cidr_ip",
        Direction::Egress => "source_cidr_ip",
    }
}

impl Validator {
    pub(super) fn rule(
        &mut self,
        r: &schema::Rule,
        dir: Direction,
        field: &str,
        default_id: String,
        kind: GroupType,
        refs: &Refs,
    ) -> Rule {
        let policy = match r.policy.as_deref() {
            Some("accept") => Policy::Accept,
            Some("drop") => Policy::Drop,
            Some(other) => {
                self.error(
                    format!("{field}.policy"),
                    format!("{other:?} is not a policy; allowed: \"accept\", \"drop\""),
                );
                Policy::Drop
            }
            None => {
                self.error(
                    format!("{field}.policy"),
                    "missing; allowed: \"accept\", \"drop\"",
                );
                Policy::Drop
            }
        };
        let priority = match r.priority {
            None => 1,
            Some(p) if PRIORITY_RANGE.contains(&p) => p as u8,
            Some(p) => {
                self.error(
                    format!("{field}.priority"),
                    format!("{p} is out of range; allowed: 1..=100 (1 is the strongest)"),
                );
                1
            }
        };
        let protocol = match &r.ip_protocol {
            Some(p) => parse_protocol(p).unwrap_or_else(|| {
                let shown = match p {
                    schema::ProtocolValue::Name(s) => format!("{s:?}"),
                    schema::ProtocolValue::Number(n) => n.to_string(),
                };
                self.error(
                    format!("{field}.ip_protocol"),
                    format!("{shown} is not a protocol; allowed: {PROTOCOLS_ALLOWED}"),
                );
                Protocol::All
            }),
            None => {
                self.error(
                    format!("{field}.ip_protocol"),
                    format!("missing; allowed: {PROTOCOLS_ALLOWED}"),
                );
                Protocol::All
            }
        };
        let ports = self.rule_ports(r, field, protocol, &refs.port_lists);
        let local = self.local_address(r, dir, field);
        let source_ports = self.source_ports(r, field, protocol);
        let peer = self.peer(r, dir, field, kind, refs);
        if let (Some(l), Peer::Cidrs(remote), Some(_)) = (local, &peer, r.remote_cidr(dir))
            && let Some(other) = remote
                .iter()
                .find(|n| n.addr().is_ipv4() != l.addr().is_ipv4())
        {
            let family = |n: &ipnet::IpNet| if n.addr().is_ipv4() { "IPv4" } else { "IPv6" };
            self.error(
                format!("{field}.{}", local_field(dir)),
                format!(
                    "{l} is {} but the remote side {other} is {}; allowed: an address of the remote side's family (such a rule could never match)",
                    family(&l),
                    family(other)
                ),
            );
        }
        let id = match &r.id {
            Some(id) => {
                self.rule_id(&format!("{field}.id"), id);
                id.clone()
            }
            None => default_id,
        };
        self.description(&format!("{field}.description"), r.description.as_deref());
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

    /// The local address of a 5-tuple rule: the destination of an ingress
    /// rule, the source of an egress rule.
    fn local_address(
        &mut self,
        r: &schema::Rule,
        dir: Direction,
        field: &str,
    ) -> Option<ipnet::IpNet> {
        let c = r.local(dir)?;
        match cidr(c) {
            Ok(net) => Some(net),
            Err(why) => {
                self.error(
                    format!("{field}.{}", local_field(dir)),
                    format!("{c:?} {why}; allowed: an IPv4 or IPv6 address or CIDR (the local address of a 5-tuple rule)"),
                );
                None
            }
        }
    }

    fn source_ports(
        &mut self,
        r: &schema::Rule,
        field: &str,
        protocol: Protocol,
    ) -> Option<PortRange> {
        let p = r.source_port_range.as_ref()?;
        if !protocol.has_ports() {
            self.error(
                format!("{field}.source_port_range"),
                format!("only tcp and udp rules have ports, not {protocol}"),
            );
            return None;
        }
        let range = parse_port_range(p);
        if range.is_none() {
            self.error(
                format!("{field}.source_port_range"),
                format!(
                    "{p:?} is not valid; allowed: \"start/end\" with 1 <= start <= end <= 65535"
                ),
            );
        }
        range
    }

    /// The remote side: the source of an ingress rule, the destination of
    /// an egress rule.
    fn peer(
        &mut self,
        r: &schema::Rule,
        dir: Direction,
        field: &str,
        kind: GroupType,
        refs: &Refs,
    ) -> Peer {
        let (cidr, group, list, side) = match dir {
            Direction::Ingress => (
                &r.source_cidr_ip,
                &r.source_group_id,
                &r.source_prefix_list_id,
                "source",
            ),
            Direction::Egress => (
                &r.dest_cidr_ip,
                &r.dest_group_id,
                &r.dest_prefix_list_id,
                "dest",
            ),
        };
        let given = [cidr.is_some(), group.is_some(), list.is_some()];
        match (cidr, group, list) {
            _ if given.iter().filter(|g| **g).count() > 1 => {
                self.error_at(
                    format!("{field}.{side}_cidr_ip"),
                    field,
                    format!(
                        "give exactly one of {side}_cidr_ip, {side}_group_id, {side}_prefix_list_id"
                    ),
                );
                Peer::Cidrs(Vec::new())
            }
            (Some(c), _, _) => match values::cidr(c) {
                Ok(net) => Peer::Cidrs(vec![net]),
                Err(why) => {
                    self.error(format!("{field}.{side}_cidr_ip"), format!("{c:?} {why}; allowed: an IPv4 or IPv6 address or CIDR, e.g. 0.0.0.0/0, 198.51.100.7, 2001:db8::/32"));
                    Peer::Cidrs(Vec::new())
                }
            },
            (_, Some(g), _) => {
                if kind == GroupType::Enterprise {
                    self.error(format!("{field}.{side}_group_id"), "enterprise groups cannot reference groups in rules (SPEC §3.4); use a CIDR or a prefix list");
                } else if !refs.group_ids.contains(g) {
                    self.error(
                        format!("{field}.{side}_group_id"),
                        format!("no [[security_group]] with id {g:?}"),
                    );
                } else if refs.enterprise_groups.contains(g) {
                    self.error(
                        format!("{field}.{side}_group_id"),
                        format!("{g:?} is an enterprise group, which cannot be a rule's authorization object; allowed: a basic group"),
                    );
                }
                Peer::Group(g.clone())
            }
            (_, _, Some(pl)) => match refs.prefix_lists.get(pl) {
                Some(list) => Peer::Cidrs(list.entries.clone()),
                None => {
                    self.error(
                        format!("{field}.{side}_prefix_list_id"),
                        format!("no [[prefix_list]] with id {pl:?}"),
                    );
                    Peer::Cidrs(Vec::new())
                }
            },
            (None, None, None) => {
                self.error(format!("{field}.{side}_cidr_ip"), format!("missing; a rule needs one of {side}_cidr_ip, {side}_group_id, {side}_prefix_list_id"));
                Peer::Cidrs(Vec::new())
            }
        }
    }

    /// Destination ports: `port_range` or `port_range_list_id` for tcp and
    /// udp, `-1/-1` (or nothing) for the others.
    fn rule_ports(
        &mut self,
        r: &schema::Rule,
        field: &str,
        protocol: Protocol,
        port_lists: &HashMap<String, NamedList<PortRange>>,
    ) -> Vec<PortRange> {
        let refuse = |v: &mut Self, name: &str, message: String| {
            v.error(format!("{field}.{name}"), message);
            vec![PortRange::ANY]
        };
        match (&r.port_range, &r.port_range_list_id) {
            (Some(_), Some(_)) => refuse(
                self,
                "port_range",
                "give port_range or port_range_list_id, not both".into(),
            ),
            (Some(p), None) if protocol.has_ports() => match parse_port_range(p) {
                Some(range) => vec![range],
                None => refuse(
                    self,
                    "port_range",
                    format!("{p:?} is not valid for {protocol}; allowed: {PORTS_ALLOWED}"),
                ),
            },
            (Some(p), None) if p.trim() != "-1/-1" => refuse(
                self,
                "port_range",
                format!("{p:?} is not valid for {protocol}; allowed: {PORTS_ALLOWED}"),
            ),
            (None, Some(id)) if protocol.has_ports() => match port_lists.get(id) {
                Some(list) => list.entries.clone(),
                None => refuse(
                    self,
                    "port_range_list_id",
                    format!("no [[port_list]] with id {id:?}"),
                ),
            },
            (None, Some(_)) => refuse(
                self,
                "port_range_list_id",
                format!("port lists apply to tcp and udp only, not {protocol}"),
            ),
            (None, None) if protocol.has_ports() => refuse(
                self,
                "port_range",
                format!("missing for {protocol}; allowed: {PORTS_ALLOWED}"),
            ),
            _ => vec![PortRange::ANY],
        }
    }
}
