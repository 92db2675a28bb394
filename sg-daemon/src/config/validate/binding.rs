//! `[[interface]]`: the interface name, the mode, instance addresses and
//! MAC, and its groups: present, listed once, of one type, and within the
//! per-interface limits of SPEC §4.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use super::{Refs, Validator, list_sizes};
use crate::{
    config::{
        limits::{MAX_GROUPS_PER_INTERFACE, MAX_IFNAME_LEN, MAX_RULES_PER_INTERFACE, rule_quota},
        schema::{Binding, Document},
        values::parse_mac,
    },
    model::{BindingMode, InterfaceBinding, SecurityGroup},
};

impl Validator {
    pub(super) fn binding(
        &mut self,
        b: &Binding,
        field: &str,
        groups: &[SecurityGroup],
        doc: &Document,
        refs: &Refs,
    ) -> InterfaceBinding {
        let name = &b.name;
        if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains(['/', ' ']) {
            self.error(
                format!("{field}.name"),
                format!("{name:?} is not an interface name; allowed: 1..=15 characters, no '/' or spaces"),
            );
        }
        let mode = match b.mode.as_deref() {
            None | Some("instance") => BindingMode::Instance,
            Some("hypervisor") => BindingMode::Hypervisor,
            Some(other) => {
                self.error(
                    format!("{field}.mode"),
                    format!("{other:?} is not a mode; allowed: \"instance\", \"hypervisor\""),
                );
                BindingMode::Instance
            }
        };
        let mut addresses = Vec::new();
        for (i, a) in b.addresses.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => self.error(
                    format!("{field}.addresses[{i}]"),
                    format!("{a:?} is not an IP address; allowed: an IPv4 or IPv6 address"),
                ),
            }
        }
        if mode == BindingMode::Hypervisor && addresses.is_empty() {
            self.error_at(
                format!("{field}.addresses"),
                field,
                "required in hypervisor mode: the instance's private IPs (its packets from any other source are dropped)",
            );
        }
        let mac = b
            .mac
            .as_deref()
            .and_then(|text| self.binding_mac(text, mode, field));
        self.bound_groups(b, field, groups, doc, refs);
        InterfaceBinding {
            name: name.clone(),
            mode,
            security_groups: b.security_groups.clone(),
            addresses,
            mac,
        }
    }

    /// `mac`: the instance's source MAC, a unicast address, in hypervisor
    /// mode only.
    fn binding_mac(&mut self, text: &str, mode: BindingMode, field: &str) -> Option<[u8; 6]> {
        let field = format!("{field}.mac");
        if mode != BindingMode::Hypervisor {
            self.error(
                field,
                "only with mode = \"hypervisor\": it pins the source MAC of the instance behind the interface",
            );
            return None;
        }
        let example = "such as \"02:00:00:00:00:07\"";
        match parse_mac(text) {
            Some(mac) if mac[0] & 1 == 0 && mac != [0; 6] => return Some(mac),
            Some(_) => self.error(
                field,
                format!("{text:?} is a multicast or all-zero MAC; allowed: a unicast MAC (lowest bit of the first byte clear), {example}"),
            ),
            None => self.error(
                field,
                format!("{text:?} is not a MAC address; allowed: six hexadecimal bytes separated by colons, {example}"),
            ),
        }
        None
    }

    /// The binding's groups exist, are listed once, are of one type, and
    /// stay within the group and rule limits.
    fn bound_groups(
        &mut self,
        b: &Binding,
        field: &str,
        groups: &[SecurityGroup],
        doc: &Document,
        refs: &Refs,
    ) {
        let list = &b.security_groups;
        if list.is_empty() || list.len() > MAX_GROUPS_PER_INTERFACE {
            self.error(
                format!("{field}.security_groups"),
                format!("{} groups; allowed: 1..=10 per interface", list.len()),
            );
        }
        let (prefix_sizes, port_sizes) =
            (list_sizes(&refs.prefix_lists), list_sizes(&refs.port_lists));
        let mut seen = HashSet::new();
        let mut kinds = HashSet::new();
        let mut quota = 0usize;
        for (i, id) in list.iter().enumerate() {
            let Some(group) = groups.iter().find(|g| &g.id == id) else {
                if self.groups_elsewhere {
                    continue;
                }
                self.error(
                    format!("{field}.security_groups[{i}]"),
                    format!("no [[security_group]] with id {id:?}"),
                );
                continue;
            };
            if !seen.insert(id) {
                self.error(
                    format!("{field}.security_groups[{i}]"),
                    format!("group {id:?} is listed twice"),
                );
                continue;
            }
            kinds.insert(group.kind);
            quota += doc
                .group(id)
                .map_or(0, |g| rule_quota(g, &prefix_sizes, &port_sizes));
        }
        if kinds.len() > 1 {
            self.error(
                format!("{field}.security_groups"),
                "groups of one interface must all be basic or all enterprise",
            );
        }
        if quota > MAX_RULES_PER_INTERFACE {
            self.error(
                format!("{field}.security_groups"),
                format!("{quota} rules (ingress and egress, prefix and port lists counted at max_entries); allowed: at most 1000 per interface"),
            );
        }
    }
}

impl Validator {
    /// Two hypervisor-mode bindings may not claim one address: both
    /// instances would be members under it, and either could send from it.
    pub(super) fn instance_addresses_unique(&mut self, interfaces: &[InterfaceBinding]) {
        let mut claimed = HashMap::new();
        for (i, b) in interfaces.iter().enumerate() {
            if b.mode != BindingMode::Hypervisor {
                continue;
            }
            for (j, addr) in b.addresses.iter().enumerate() {
                if let Some(other) = claimed.insert(*addr, b.name.as_str()) {
                    self.error(
                        format!("interface[{i}].addresses[{j}]"),
                        format!("{addr} is already the address of the instance behind {other:?}; allowed: addresses no other hypervisor-mode binding claims"),
                    );
                }
            }
        }
    }
}
