//! What the kernel counted: per decision reason, per interface and verdict,
//! per rule.

use super::{
    Counters, InterfaceCount, ReasonCount, Reply, RuleCount,
    names::{bound_name, ifname, policy_name},
};
use crate::{compile::Origin, daemon::Daemon, model::Direction};

pub(super) fn counters(daemon: &Daemon) -> Result<Reply, String> {
    let failed = |e: anyhow::Error| format!("reading the counters: {e:#}");
    let dp = daemon.dataplane();
    let reasons = dp
        .stats()
        .map_err(failed)?
        .into_iter()
        .map(|(reason, packets)| ReasonCount {
            reason: reason.name().into(),
            verdict: policy_name(reason.accepts()).into(),
            packets,
        })
        .collect();
    let mut interfaces: Vec<InterfaceCount> = dp
        .interface_counters()
        .map_err(failed)?
        .into_iter()
        .map(|(k, c)| InterfaceCount {
            interface: daemon
                .interface_name(k.ifindex)
                .unwrap_or_else(|| ifname(k.ifindex)),
            direction: bound_name(Direction::from_raw(k.dir.into())).into(),
            verdict: policy_name(k.accepted != 0).into(),
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    interfaces.sort_by(|a, b| {
        (&a.interface, &a.direction, &a.verdict).cmp(&(&b.interface, &b.direction, &b.verdict))
    });
    let mut rules: Vec<RuleCount> = daemon
        .rule_counts()
        .map_err(failed)?
        .into_iter()
        .map(|c| {
            let (group, rule) = match c.origin {
                Origin::Rule { group, id } => (Some(group), id),
                Origin::IntraGroup => (None, "(intra-group)".into()),
            };
            RuleCount {
                interface: c.interface,
                direction: c.direction.name().into(),
                group,
                rule,
                packets: c.packets,
                bytes: c.bytes,
            }
        })
        .collect();
    rules.sort_by(|a, b| {
        (&a.interface, &a.direction, &a.group, &a.rule).cmp(&(
            &b.interface,
            &b.direction,
            &b.group,
            &b.rule,
        ))
    });
    Ok(Reply::Counters(Counters {
        reasons,
        interfaces,
        rules,
    }))
}
