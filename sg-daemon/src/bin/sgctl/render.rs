//! The tables `sgctl` prints for each reply (the default `--output table`).

use sg_daemon::{
    api::{
        Counters, Diagnosis, Direction, Effective, EffectiveRule, GroupInfo, InterfaceInfo, Reply,
        SessionInfo,
    },
    config::schema,
};

/// How to show the answer, chosen with the request (`Plain`: the reply's
/// own table).
pub(crate) enum View {
    Message,
    GroupList,
    GroupDetail,
    Plain,
}

/// One drop as a line of JSON (`sgctl -o json drops --follow`).
pub(crate) fn drop_json(d: &sg_daemon::drops::Drop) -> String {
    serde_json::to_string(d).expect("drops serialise")
}

/// An endpoint: `192.0.2.1:80`, `[2001:db8::2]:48944`.
fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// A protocol by name when it has one, else its number.
fn protocol(number: u8) -> String {
    sg_common::proto::name(number).map_or_else(|| number.to_string(), str::to_owned)
}

pub(crate) fn drop_rows(drops: &[sg_daemon::drops::Drop], headers: bool) -> String {
    let rows: Vec<Vec<String>> = drops
        .iter()
        .map(|d| {
            vec![
                if d.time.is_empty() {
                    format!("{:.3}s after boot", d.boot_secs)
                } else {
                    d.time.clone()
                },
                d.interface.clone(),
                d.direction.clone(),
                protocol(d.protocol),
                endpoint(&d.src.to_string(), d.src_port),
                endpoint(&d.dst.to_string(), d.dst_port),
                d.reason.clone(),
                or_dash(d.rule.as_deref()),
            ]
        })
        .collect();
    let text = table(
        &[
            "TIME (UTC)",
            "INTERFACE",
            "DIRECTION",
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "REASON",
            "RULE",
        ],
        &rows,
    );
    if headers {
        text
    } else {
        text.lines().skip(1).map(|l| format!("{l}\n")).collect()
    }
}

/// Left-aligned columns, two spaces apart; no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

pub(crate) fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

pub(crate) fn render(reply: Reply, view: View) -> String {
    match reply {
        Reply::Done { message, .. } => format!("{message}\n"),
        Reply::EcsGroup(group) => group.to_json(),
        Reply::Drops(drops) => drop_rows(&drops, true),
        Reply::Groups(groups) => match view {
            View::GroupDetail => groups
                .iter()
                .map(group_detail)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => group_list(&groups),
        },
        Reply::Interfaces(list) => interfaces(&list),
        Reply::Lists(lists) => table(
            &["ID", "MAX", "ENTRIES", "NAME", "DESCRIPTION"],
            &lists
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        l.max_entries.to_string(),
                        l.entries.join(","),
                        or_dash(l.name.as_deref()),
                        or_dash(l.description.as_deref()),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Reply::EffectiveRules(e) => effective(&e),
        Reply::Diagnosis(d) => diagnosis(&d),
        Reply::Sessions(s) => sessions(&s),
        Reply::Counters(c) => counters(&c),
        Reply::Export { toml } => toml,
        Reply::Health(report) => super::operations::health(&report),
        Reply::Import(report) => super::operations::import(&report),
        Reply::SnapshotPolicies(list) => super::snapshot::policies(&list),
        Reply::Snapshots(list) => super::snapshot::list(&list),
        Reply::SnapshotDiff(diff) => super::snapshot::diff(&diff),
        Reply::Datastore(info) => super::datastore::status(&info),
    }
}

fn group_list(groups: &[GroupInfo]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let s = &g.group;
            vec![
                s.id.clone(),
                s.name.clone().unwrap_or_else(|| s.id.clone()),
                s.kind.clone().unwrap_or_else(|| "basic".into()),
                s.ingress.len().to_string(),
                s.egress.len().to_string(),
                or_dash(Some(&g.interfaces.join(","))),
                if s.deletion_protection { "yes" } else { "no" }.into(),
                or_dash(s.description.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "TYPE",
            "INGRESS",
            "EGRESS",
            "INTERFACES",
            "PROTECTED",
            "DESCRIPTION",
        ],
        &rows,
    )
}

fn group_detail(g: &GroupInfo) -> String {
    let s = &g.group;
    let kind = s.kind.as_deref().unwrap_or("basic");
    let mut out = format!("group {}\n", s.id);
    let mut field = |k: &str, v: String| out.push_str(&format!("  {k:<21} {v}\n"));
    field("name", s.name.clone().unwrap_or_else(|| s.id.clone()));
    field("description", or_dash(s.description.as_deref()));
    field("type", kind.into());
    if kind == "basic" {
        field(
            "inner_access_policy",
            s.inner_access_policy
                .clone()
                .unwrap_or_else(|| "accept".into()),
        );
    }
    field("deletion_protection", s.deletion_protection.to_string());
    field("members", or_dash(Some(&s.members.join(", "))));
    field("interfaces", or_dash(Some(&g.interfaces.join(", "))));
    field("referenced by", or_dash(Some(&g.referenced_by.join(", "))));
    for dir in Direction::BOTH {
        let rules = s.rules(dir);
        out.push_str(&format!("\n{dir} rules ({}):\n", rules.len()));
        if rules.is_empty() {
            continue;
        }
        let rules: Vec<&schema::Rule> = rules.iter().collect();
        out.push_str(&table(&rule_headers(dir), &rule_rows(&rules, dir)));
    }
    out
}

/// The columns of [`rule_rows`].
pub(crate) fn rule_headers(dir: Direction) -> Vec<&'static str> {
    vec![
        "ID",
        "POLICY",
        "PRIORITY",
        "PROTOCOL",
        "PORTS",
        if dir == Direction::Ingress {
            "SOURCE"
        } else {
            "DESTINATION"
        },
        "LOCAL",
        "SOURCE PORTS",
        "DESCRIPTION",
    ]
}

/// Rules of one direction, a row each.
pub(crate) fn rule_rows(rules: &[&schema::Rule], dir: Direction) -> Vec<Vec<String>> {
    rules
        .iter()
        .map(|r| {
            vec![
                or_dash(r.id.as_deref()),
                or_dash(r.policy.as_deref()),
                r.priority.unwrap_or(1).to_string(),
                r.ip_protocol
                    .as_ref()
                    .map_or("-".into(), ToString::to_string),
                or_dash(r.port_range.as_deref().or(r.port_range_list_id.as_deref())),
                or_dash(r.remote(dir)),
                or_dash(r.local(dir)),
                or_dash(r.source_port_range.as_deref()),
                or_dash(r.description.as_deref()),
            ]
        })
        .collect()
}

fn interfaces(list: &[InterfaceInfo]) -> String {
    table(
        &["NAME", "MODE", "GROUPS", "ADDRESSES", "PRESENT"],
        &list
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    i.mode.clone(),
                    i.security_groups.join(","),
                    if i.addresses.is_empty() {
                        "(own)".into()
                    } else {
                        i.addresses.join(",")
                    },
                    match (&i.not_enforced, i.present) {
                        (Some(why), _) => format!("yes, not enforced: {why}"),
                        (None, true) => "yes".into(),
                        (None, false) => "no (waiting)".into(),
                    },
                ]
            })
            .collect::<Vec<_>>(),
    )
}

fn effective(e: &Effective) -> String {
    let mut out = format!(
        "interface {} ({} mode), groups in binding order: {}\ninstance addresses: {}\n",
        e.interface,
        e.mode,
        e.security_groups.join(", "),
        or_dash(Some(&e.instance_addresses.join(", ")))
    );
    for (name, rules) in [("ingress", &e.ingress), ("egress", &e.egress)] {
        out.push_str(&format!(
            "\n{name}: first match decides; none matches: {}\n",
            rules.default_policy
        ));
        let row = |r: &EffectiveRule| {
            vec![
                r.position.to_string(),
                or_dash(r.group.as_deref()),
                r.id.clone(),
                r.policy.clone(),
                r.priority.map_or("-".into(), |p| p.to_string()),
                r.ip_protocol.clone(),
                r.port_range.clone(),
                r.remote.clone(),
                or_dash(r.local.as_deref()),
                or_dash(r.source_port_range.as_deref()),
                or_dash(Some(&r.description)),
            ]
        };
        out.push_str(&table(
            &[
                "#",
                "GROUP",
                "RULE",
                "POLICY",
                "PRIORITY",
                "PROTOCOL",
                "PORTS",
                "REMOTE",
                "LOCAL",
                "SOURCE PORTS",
                "DESCRIPTION",
            ],
            &rules.rules.iter().map(row).collect::<Vec<_>>(),
        ));
    }
    out
}

fn diagnosis(d: &Diagnosis) -> String {
    let by = match (&d.group, &d.rule) {
        (Some(g), Some(r)) => format!("{} {r} of group {g}", d.decided_by),
        _ => d.decided_by.clone(),
    };
    format!("{} ({by})\n{}\n", d.verdict, d.explanation)
}

fn sessions(list: &[SessionInfo]) -> String {
    table(
        &[
            "INTERFACE",
            "PROTOCOL",
            "LOCAL",
            "REMOTE",
            "OPENED",
            "STATE",
            "ANSWERED",
            "IDLE",
            "EXPIRES IN",
        ],
        &list
            .iter()
            .map(|s| {
                vec![
                    s.interface.clone(),
                    s.protocol.clone(),
                    endpoint(&s.local, s.local_port),
                    endpoint(&s.remote, s.remote_port),
                    s.opened.clone(),
                    s.state.clone(),
                    if s.answered { "yes" } else { "no" }.into(),
                    format!("{}s", s.idle_secs),
                    match (s.state.as_str(), s.expires_in_secs) {
                        ("ended", _) => "while the drop rule stays".into(),
                        (_, 0) => "expired".into(),
                        (_, secs) => format!("{secs}s"),
                    },
                ]
            })
            .collect::<Vec<_>>(),
    )
}

fn counters(c: &Counters) -> String {
    let mut out = String::from("per decision reason:\n");
    out.push_str(&table(
        &["REASON", "VERDICT", "PACKETS"],
        &c.reasons
            .iter()
            .map(|r| vec![r.reason.clone(), r.verdict.clone(), r.packets.to_string()])
            .collect::<Vec<_>>(),
    ));
    out.push_str("\nper interface:\n");
    out.push_str(&table(
        &["INTERFACE", "DIRECTION", "VERDICT", "PACKETS", "BYTES"],
        &c.interfaces
            .iter()
            .map(|i| {
                vec![
                    i.interface.clone(),
                    i.direction.clone(),
                    i.verdict.clone(),
                    i.packets.to_string(),
                    i.bytes.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out.push_str("\nper rule:\n");
    out.push_str(&table(
        &[
            "INTERFACE",
            "DIRECTION",
            "GROUP",
            "RULE",
            "PACKETS",
            "BYTES",
        ],
        &c.rules
            .iter()
            .map(|r| {
                vec![
                    r.interface.clone(),
                    r.direction.clone(),
                    or_dash(r.group.as_deref()),
                    r.rule.clone(),
                    r.packets.to_string(),
                    r.bytes.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    #[test]
    fn effective_rules_show_their_description() {
        let rule = EffectiveRule {
            position: 1,
            group: Some("sg-web".into()),
            id: "sg-web/ingress/1".into(),
            policy: "accept".into(),
            priority: Some(1),
            ip_protocol: "tcp".into(),
            port_range: "22/22".into(),
            source_port_range: None,
            remote: "198.51.100.0/24".into(),
            remote_addresses: vec!["198.51.100.0/24".into()],
            local: None,
            description: "ssh from the office".into(),
        };
        let rules = |rules| sg_daemon::api::DirectionRules {
            rules,
            default_policy: "drop".into(),
        };
        let text = effective(&Effective {
            interface: "eth0".into(),
            mode: "instance".into(),
            security_groups: vec!["sg-web".into()],
            instance_addresses: Vec::new(),
            ingress: rules(vec![rule]),
            egress: rules(Vec::new()),
        });
        assert!(text.contains("DESCRIPTION"), "{text}");
        assert!(text.contains("ssh from the office"), "{text}");
    }

    fn a_drop(src: &str, dst: &str, protocol: u8) -> sg_daemon::drops::Drop {
        sg_daemon::drops::Drop {
            seq: 1,
            boot_secs: 12.5,
            time: "2026-12-01T16:30:05.123Z".into(),
            interface: "eth0".into(),
            direction: "ingress".into(),
            protocol,
            protocol_name: sg_common::proto::name(protocol).map(str::to_owned),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 48944,
            dst_port: 22,
            reason: "default-drop".into(),
            rule: None,
        }
    }

    #[test]
    fn drops_show_wall_clock_time_protocol_names_and_bracketed_ipv6() {
        for (src, dst, protocol, wanted) in [
            (
                "2001:db8::2",
                "2001:db8::1",
                6,
                "2026-12-01T16:30:05.123Z  eth0  ingress  tcp  [2001:db8::2]:48944  [2001:db8::1]:22",
            ),
            (
                "198.51.100.7",
                "192.0.2.10",
                17,
                "2026-12-01T16:30:05.123Z  eth0  ingress  udp  198.51.100.7:48944  192.0.2.10:22",
            ),
            (
                "198.51.100.7",
                "192.0.2.10",
                132,
                "2026-12-01T16:30:05.123Z  eth0  ingress  132  198.51.100.7:48944  192.0.2.10:22",
            ),
        ] {
            let rows = drop_rows(&[a_drop(src, dst, protocol)], false);
            let cells = rows.split_whitespace().collect::<Vec<_>>().join("  ");
            assert!(cells.starts_with(wanted), "{rows}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&drop_json(&a_drop("2001:db8::2", "2001:db8::1", 6))).unwrap();
        assert_eq!(json["protocol"], 6);
        assert_eq!(json["protocol_name"], "tcp");
        assert_eq!(json["boot_secs"], 12.5);
        assert_eq!(json["time"], "2026-12-01T16:30:05.123Z");
        assert_eq!(json["src"], "2001:db8::2");
    }
}
