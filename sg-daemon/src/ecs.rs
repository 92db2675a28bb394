//! The ECS formats of a group's rules (SPEC §5): the JSON of the ECS API's
//! `DescribeSecurityGroupAttribute` answer and the console's CSV, which
//! `sgctl group export` writes (and a later import can read).
//!
//! One mapping both ways: [`Permission`] is one rule in ECS terms, its
//! serde names are the JSON keys and [`COLUMNS`] (the same names, in the
//! CSV's order) the CSV header; [`Permission::from_rule`] maps an sg rule to
//! it and [`Permission::to_rule`] back (values in any letter case); the
//! csv crate writes and reads it by the same serde names
//! ([`SecurityGroupAttribute::to_csv`], [`permissions_from_csv`]): an import reuses all
//! of it. sg's rule fields map by
//! name: `source_cidr_ip` / `dest_cidr_ip` into the IPv4 or the IPv6 column
//! by the address family (`SourceCidrIp` or `Ipv6SourceCidrIp`, ...), the
//! group and prefix-list ids into `Source*` / `Dest*` as written — so an
//! ingress rule's remote side is `Source*`, an egress rule's `Dest*`, and a
//! 5-tuple rule's local side the other columns. sg keeps no creation time:
//! `CreateTime` is empty. Empty fields are `""`.

use serde::{Deserialize, Serialize};

use crate::{
    config::schema::{Group, ProtocolValue, Rule},
    model::Direction,
};

/// The permission fields, in the CSV's column order (the JSON's keys).
pub const COLUMNS: [&str; 18] = [
    "Direction",
    "IpProtocol",
    "PortRange",
    "SourceCidrIp",
    "Ipv6SourceCidrIp",
    "SourceGroupId",
    "SourcePrefixListId",
    "SourcePortRange",
    "DestCidrIp",
    "Ipv6DestCidrIp",
    "DestGroupId",
    "DestPrefixListId",
    "PortRangeListId",
    "Policy",
    "Priority",
    "Description",
    "SecurityGroupRuleId",
    "CreateTime",
];

/// A group in the shape of `DescribeSecurityGroupAttribute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupAttribute {
    pub region_id: String,
    pub security_group_id: String,
    pub security_group_name: String,
    pub description: String,
    /// `Accept` or `Drop`.
    pub inner_access_policy: String,
    pub permissions: Permissions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permissions {
    pub permission: Vec<Permission>,
}

/// One rule in ECS terms; every field is text, `""` when empty (or
/// missing, when read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Permission {
    pub direction: String,
    pub ip_protocol: String,
    pub port_range: String,
    pub source_cidr_ip: String,
    pub ipv6_source_cidr_ip: String,
    pub source_group_id: String,
    pub source_prefix_list_id: String,
    pub source_port_range: String,
    pub dest_cidr_ip: String,
    pub ipv6_dest_cidr_ip: String,
    pub dest_group_id: String,
    pub dest_prefix_list_id: String,
    pub port_range_list_id: String,
    pub policy: String,
    /// Text; read also as a number (as the ECS API writes it).
    #[serde(deserialize_with = "text_or_number")]
    pub priority: String,
    pub description: String,
    pub security_group_rule_id: String,
    pub create_time: String,
}

fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Number(f64),
    }
    Ok(match Value::deserialize(d)? {
        Value::Text(s) => s,
        Value::Integer(n) => n.to_string(),
        Value::Number(n) => n.to_string(),
    })
}

/// sg's protocol names and ECS's.
const PROTOCOLS: [(&str, &str); 6] = [
    ("tcp", "TCP"),
    ("udp", "UDP"),
    ("icmp", "ICMP"),
    ("icmpv6", "ICMPv6"),
    ("gre", "GRE"),
    ("all", "ALL"),
];

/// sg's policies and ECS's.
const POLICIES: [(&str, &str); 2] = [("accept", "Accept"), ("drop", "Drop")];

/// ECS's value back to sg's, in any letter case; `None` if unknown.
fn from_ecs(table: &[(&'static str, &str)], ecs: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, e)| e.eq_ignore_ascii_case(ecs))
        .map(|(s, _)| *s)
}

fn to_ecs(table: &[(&str, &'static str)], sg: &str) -> String {
    table
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(sg))
        .map_or_else(|| sg.to_owned(), |(_, e)| (*e).to_owned())
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A CIDR into the IPv4 or the IPv6 column.
fn by_family(cidr: &Option<String>) -> (String, String) {
    match cidr {
        Some(c) if c.contains(':') => (String::new(), c.clone()),
        Some(c) => (c.clone(), String::new()),
        None => (String::new(), String::new()),
    }
}

impl Permission {
    /// One of `group`'s rules (ids as stored; priority 1 when absent).
    pub fn from_rule(dir: Direction, rule: &Rule) -> Permission {
        let (source_cidr_ip, ipv6_source_cidr_ip) = by_family(&rule.source_cidr_ip);
        let (dest_cidr_ip, ipv6_dest_cidr_ip) = by_family(&rule.dest_cidr_ip);
        let port_range = match (&rule.port_range, &rule.port_range_list_id) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => "-1/-1".into(),
        };
        Permission {
            direction: dir.name().into(),
            ip_protocol: match &rule.ip_protocol {
                Some(ProtocolValue::Name(n)) => to_ecs(&PROTOCOLS, n),
                Some(ProtocolValue::Number(n)) => n.to_string(),
                None => String::new(),
            },
            port_range,
            source_cidr_ip,
            ipv6_source_cidr_ip,
            source_group_id: text(&rule.source_group_id),
            source_prefix_list_id: text(&rule.source_prefix_list_id),
            source_port_range: text(&rule.source_port_range),
            dest_cidr_ip,
            ipv6_dest_cidr_ip,
            dest_group_id: text(&rule.dest_group_id),
            dest_prefix_list_id: text(&rule.dest_prefix_list_id),
            port_range_list_id: text(&rule.port_range_list_id),
            policy: rule
                .policy
                .as_deref()
                .map(|p| to_ecs(&POLICIES, p))
                .unwrap_or_default(),
            priority: rule.priority.unwrap_or(1).to_string(),
            description: text(&rule.description),
            security_group_rule_id: text(&rule.id),
            create_time: String::new(),
        }
    }

    /// The reverse of [`Permission::from_rule`] (for an import): the
    /// direction and the rule, without validating it further than the
    /// mapping needs (the config file's checks do the rest). Values are
    /// read in any letter case; an error names the field.
    pub fn to_rule(&self) -> Result<(Direction, Rule), String> {
        let direction = match self.direction.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            other => {
                return Err(format!(
                    "Direction: {other:?} is not valid; allowed: \"ingress\", \"egress\""
                ));
            }
        };
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let cidr = |v4: &str, v6: &str, names: &str| match (v4.is_empty(), v6.is_empty()) {
            (_, true) => Ok(opt(v4)),
            (true, false) => Ok(opt(v6)),
            (false, false) => Err(format!("{names}: give one of them, not both")),
        };
        let ip_protocol = match self.ip_protocol.as_str() {
            "" => None,
            p => Some(match (from_ecs(&PROTOCOLS, p), p.parse::<i64>()) {
                (Some(name), _) => ProtocolValue::Name(name.into()),
                (None, Ok(n)) => ProtocolValue::Number(n),
                (None, Err(_)) => ProtocolValue::Name(p.to_owned()),
            }),
        };
        let priority = match self.priority.as_str() {
            "" => None,
            p => Some(
                p.parse::<i64>()
                    .map_err(|_| format!("Priority: {p:?} is not a number; allowed: 1..=100"))?,
            ),
        };
        let port_range = match (self.port_range.as_str(), self.port_range_list_id.as_str()) {
            ("", _) => None,
            ("-1/-1", l) if !l.is_empty() => None,
            (r, _) => Some(r.to_owned()),
        };
        let rule = Rule {
            id: opt(&self.security_group_rule_id),
            policy: opt(&self.policy).map(|p| from_ecs(&POLICIES, &p).map_or(p, str::to_owned)),
            priority,
            ip_protocol,
            port_range,
            port_range_list_id: opt(&self.port_range_list_id),
            source_port_range: opt(&self.source_port_range),
            source_cidr_ip: cidr(
                &self.source_cidr_ip,
                &self.ipv6_source_cidr_ip,
                "SourceCidrIp, Ipv6SourceCidrIp",
            )?,
            source_group_id: opt(&self.source_group_id),
            source_prefix_list_id: opt(&self.source_prefix_list_id),
            dest_cidr_ip: cidr(
                &self.dest_cidr_ip,
                &self.ipv6_dest_cidr_ip,
                "DestCidrIp, Ipv6DestCidrIp",
            )?,
            dest_group_id: opt(&self.dest_group_id),
            dest_prefix_list_id: opt(&self.dest_prefix_list_id),
            description: opt(&self.description),
        };
        Ok((direction, rule))
    }
}

impl SecurityGroupAttribute {
    /// A group, ingress rules first, each direction in its order.
    pub fn from_group(region: &str, group: &Group) -> SecurityGroupAttribute {
        let enterprise = group.kind.as_deref() == Some("enterprise");
        let inner = match group.inner_access_policy.as_deref() {
            Some(p) => to_ecs(&POLICIES, p),
            None if enterprise => "Drop".into(),
            None => "Accept".into(),
        };
        let permission = [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(|d| {
                group
                    .rules(d)
                    .iter()
                    .map(move |r| Permission::from_rule(d, r))
            })
            .collect();
        SecurityGroupAttribute {
            region_id: region.into(),
            security_group_id: group.id.clone(),
            security_group_name: group.name.clone().unwrap_or_else(|| group.id.clone()),
            description: text(&group.description),
            inner_access_policy: inner,
            permissions: Permissions { permission },
        }
    }

    /// The JSON file's text (pretty, with a final newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("text serialises");
        s.push('\n');
        s
    }

    /// The CSV file's text: a header, then one row per rule (RFC 4180:
    /// a field with a comma, a quote or a line break is quoted, quotes
    /// doubled; lines end with CRLF).
    pub fn to_csv(&self) -> String {
        // The header written here, not by serde: also when there is no rule.
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .has_headers(false)
            .from_writer(Vec::new());
        writer
            .write_record(COLUMNS)
            .expect("writing CSV into memory cannot fail");
        for p in &self.permissions.permission {
            writer
                .serialize(p)
                .expect("writing CSV into memory cannot fail");
        }
        let bytes = writer
            .into_inner()
            .expect("flushing CSV into memory cannot fail");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }
}

/// The permissions of a CSV file's text (a header row naming the columns,
/// in any order, then one rule a row); an error names the row.
pub fn permissions_from_csv(text: &str) -> Result<Vec<Permission>, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| format!("row {}: {e}", i + 2)))
        .collect()
}

/// The permissions of an ECS file's text: JSON (the shape of
/// `DescribeSecurityGroupAttribute`, or a bare array of permissions) or
/// CSV; `format` is `"json"`, `"csv"` or empty (then by the content: JSON
/// starts with `{` or `[`). Returns them and whether the file was CSV.
pub fn permissions_from_text(text: &str, format: &str) -> Result<(Vec<Permission>, bool), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let csv = match format.to_ascii_lowercase().as_str() {
        "json" => false,
        "csv" => true,
        "" => !matches!(text.trim_start().chars().next(), Some('{' | '[')),
        other => {
            return Err(format!(
                "unknown format {other:?}; allowed: \"json\", \"csv\""
            ));
        }
    };
    if csv {
        return permissions_from_csv(text).map(|p| (p, true));
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        Group {
            #[serde(rename = "Permissions")]
            permissions: Permissions,
        },
        Bare(Vec<Permission>),
    }
    match serde_json::from_str::<File>(text) {
        Ok(File::Group { permissions }) => Ok((permissions.permission, false)),
        Ok(File::Bare(p)) => Ok((p, false)),
        Err(e) => Err(format!(
            "not an ECS JSON file (an object with Permissions.Permission, or an array of permissions): {e}"
        )),
    }
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub group: String,
    pub dry_run: bool,
    /// Whether the rules were added (not on a dry run, nor when a rule was
    /// refused).
    pub applied: bool,
    pub added: Vec<ImportedRule>,
    pub skipped: Vec<ImportedRule>,
    pub refused: Vec<ImportedRule>,
}

/// One rule of an imported file: where it is (`row 3` of a CSV, counting
/// the header as row 1, or `index 0` of a JSON), its direction, its id
/// (the new one, for an added rule; the existing duplicate's for a
/// duplicate), the field at fault and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportedRule {
    pub position: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub reason: String,
}

/// `ecs_{region}_{groupId}.json`.
pub fn json_file_name(region: &str, group: &str) -> String {
    format!("ecs_{region}_{group}.json")
}

/// `ecs_sgRule_{groupId}_{region}_{date}.csv`, `date` as `YYYY-MM-DD`.
pub fn csv_file_name(group: &str, region: &str, date: &str) -> String {
    format!("ecs_sgRule_{group}_{region}_{date}.csv")
}

#[cfg(test)]
mod tests;
