//! The views of the desired state: groups with their bindings and
//! referrers, interface bindings, and an interface's effective rules.

use super::{
    DirectionRules, Effective, EffectiveRule, GroupInfo, InterfaceInfo, Reply,
    edit::{bound_interfaces, referrers},
    names::{binding, mode_name, policy_name, ports_text},
};
use crate::{
    compile::{Origin, build_table},
    config::schema::Document,
    model::{self, Config, PortRange},
};

pub(super) fn describe_groups(doc: &Document, only: Option<&str>) -> Result<Reply, String> {
    if let Some(id) = only
        && doc.group(id).is_none()
    {
        return Err(format!("no group {id}"));
    }
    Ok(Reply::Groups(
        doc.security_group
            .iter()
            .filter(|g| only.is_none_or(|id| g.id == id))
            .map(|g| GroupInfo {
                group: g.clone(),
                interfaces: bound_interfaces(doc, &g.id),
                referenced_by: referrers(doc, &g.id),
            })
            .collect(),
    ))
}

pub(super) fn list_interfaces(doc: &Document) -> Reply {
    Reply::Interfaces(
        doc.interface
            .iter()
            .map(|b| {
                let present = nix::net::if_::if_nametoindex(b.name.as_str()).is_ok();
                InterfaceInfo {
                    name: b.name.clone(),
                    mode: b.mode.clone().unwrap_or_else(|| "instance".into()),
                    addresses: b.addresses.clone(),
                    security_groups: b.security_groups.clone(),
                    present,
                    not_enforced: present
                        .then(|| crate::linktype::link_header(&b.name).err())
                        .flatten(),
                }
            })
            .collect(),
    )
}

pub(super) fn effective_rules(
    doc: &Document,
    config: &Config,
    interface: &str,
) -> Result<Effective, String> {
    let b = binding(config, interface)?;
    let addresses = crate::daemon::resolve_addresses(config);
    let one = |dir: model::Direction| -> DirectionRules {
        let table = build_table(config, b, &addresses, dir);
        let rules = table
            .rules
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let remote_addresses: Vec<String> =
                    t.remote.iter().map(ToString::to_string).collect();
                match &t.origin {
                    Origin::IntraGroup => EffectiveRule {
                        position: i + 1,
                        group: None,
                        id: "(intra-group)".into(),
                        policy: "accept".into(),
                        priority: None,
                        ip_protocol: "all".into(),
                        port_range: "-1/-1".into(),
                        source_port_range: None,
                        remote: "members (inner_access_policy = accept)".into(),
                        remote_addresses,
                        local: None,
                        description: "hidden default of basic groups".into(),
                    },
                    Origin::Rule { group, id } => {
                        let model_rule = config
                            .group(group)
                            .and_then(|g| g.rules(dir).iter().find(|r| &r.id == id));
                        let doc_rule = doc.group(group).and_then(|g| {
                            g.rules(dir)
                                .iter()
                                .find(|r| r.id.as_deref() == Some(id.as_str()))
                        });
                        EffectiveRule {
                            position: i + 1,
                            group: Some(group.clone()),
                            id: id.clone(),
                            policy: policy_name(t.accept).into(),
                            priority: model_rule.map(|r| r.priority),
                            ip_protocol: t.protocol.to_string(),
                            port_range: doc_rule
                                .and_then(|r| r.port_range_list_id.clone())
                                .unwrap_or_else(|| ports_text(&t.ports)),
                            source_port_range: (t.source_ports != PortRange::ANY)
                                .then(|| t.source_ports.to_string()),
                            remote: doc_rule
                                .and_then(|r| r.remote(dir))
                                .map(str::to_owned)
                                .unwrap_or_else(|| remote_addresses.join(",")),
                            remote_addresses,
                            local: t.local.map(|n| n.to_string()),
                            description: model_rule
                                .map(|r| r.description.clone())
                                .unwrap_or_default(),
                        }
                    }
                }
            })
            .collect();
        DirectionRules {
            rules,
            default_policy: policy_name(table.default_accept).into(),
        }
    };
    Ok(Effective {
        interface: interface.to_owned(),
        mode: mode_name(b.mode).into(),
        security_groups: b.security_groups.clone(),
        instance_addresses: addresses
            .instance(interface)
            .iter()
            .map(ToString::to_string)
            .collect(),
        ingress: one(model::Direction::Ingress),
        egress: one(model::Direction::Egress),
    })
}
