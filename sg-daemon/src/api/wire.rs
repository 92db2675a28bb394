//! The wire format: versioned request and response lines, the verbs
//! ([`Request`]) and the answers ([`Reply`]) with the structs they carry.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Direction;
use crate::config::schema;

/// The protocol version this daemon and `sgctl` speak.
pub const VERSION: u32 = 1;

/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    pub v: u32,
    pub request: Request,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseLine {
    pub v: u32,
    pub response: Response,
}

/// The verbs, after the ECS API. Rules, groups and lists carry the config
/// file's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", deny_unknown_fields)]
pub enum Request {
    /// All groups, or one, with their rules, bindings and referrers.
    DescribeGroups {
        #[serde(default)]
        group: Option<String>,
    },
    /// A new group (rules may come with it).
    CreateGroup {
        group: schema::Group,
    },
    /// Changes the given fields of a group; an empty name or description
    /// removes it.
    ModifyGroup {
        group: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        inner_access_policy: Option<String>,
        #[serde(default)]
        deletion_protection: Option<bool>,
        /// Replaces the member list.
        #[serde(default)]
        members: Option<Vec<String>>,
    },
    /// Refused while the group is bound to an interface, referenced by
    /// another group's rule, or under deletion protection (SPEC §4).
    DeleteGroup {
        group: String,
    },
    /// A new group `id` with `source`'s type, inner access policy, members
    /// and (unless `without_rules`) rules, with fresh ids and priorities
    /// over 100 made 100; not its bindings or deletion protection.
    CloneGroup {
        source: String,
        id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        without_rules: bool,
    },
    /// A group in the shape of ECS's `DescribeSecurityGroupAttribute`
    /// (`sgctl group export` writes it as JSON or CSV).
    ExportGroup {
        group: String,
    },
    /// Adds the rules of an ECS file (`content`, JSON or CSV; `format`
    /// `"json"`, `"csv"` or empty: by the content) to `group` in one change
    /// ([`crate::ecs::ImportReport`]); `dry_run` changes nothing.
    ImportGroup {
        group: String,
        #[serde(default)]
        format: String,
        content: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Adds a rule; without an `id` one is generated. Answers with the id.
    AuthorizeRule {
        group: String,
        direction: Direction,
        rule: schema::Rule,
    },
    /// Removes a rule by id (from either direction unless one is given).
    RevokeRule {
        group: String,
        #[serde(default)]
        direction: Option<Direction>,
        id: String,
    },
    /// Changes the given fields of a rule, found by id. Giving one of the
    /// remote-side fields replaces the remote side (likewise `port_range`
    /// and `port_range_list_id`); an empty string removes a field.
    ModifyRule {
        group: String,
        #[serde(default)]
        direction: Option<Direction>,
        id: String,
        rule: schema::Rule,
    },
    /// The snapshot policies (`[[snapshot_policy]]`).
    ListSnapshotPolicies,
    /// A new snapshot policy; the groups it lists are snapshotted at once
    /// (if it is enabled).
    CreateSnapshotPolicy {
        policy: schema::SnapshotPolicy,
    },
    /// Changes the given fields of a snapshot policy.
    ModifySnapshotPolicy {
        id: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        retention_days: Option<i64>,
    },
    /// Removes a snapshot policy (its snapshots stay for their retention).
    DeleteSnapshotPolicy {
        id: String,
    },
    /// Adds groups to a snapshot policy; each newly covered group is
    /// snapshotted at once.
    AssociateSnapshotPolicy {
        id: String,
        groups: Vec<String>,
    },
    /// Takes groups off a snapshot policy.
    DisassociateSnapshotPolicy {
        id: String,
        groups: Vec<String>,
    },
    /// A group's snapshots, newest first, and when the next is due.
    ListSnapshots {
        group: String,
    },
    /// A snapshot against the group's rules in force, per direction.
    DiffSnapshot {
        group: String,
        snapshot: String,
    },
    /// Replaces every rule of the group with the snapshot's, in one
    /// change (itself a change: a snapshot of what it replaced is
    /// scheduled).
    RestoreSnapshot {
        group: String,
        snapshot: String,
    },
    /// Where the shared objects live, and on a fleet host the connection
    /// to etcd, the revision in force and the hosts seen.
    DatastoreStatus,
    /// Seeds an empty etcd prefix with the groups, lists and snapshot
    /// policies of a config file (`content`, its TOML text).
    DatastorePush {
        content: String,
    },
    /// The interface bindings.
    ListInterfaces,
    /// Adds a group to an interface's bindings (last in order), binding the
    /// interface if it was not. `mode` and `addresses`, when given, replace
    /// the binding's.
    JoinInterface {
        interface: String,
        group: String,
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        addresses: Option<Vec<String>>,
    },
    /// Removes a group from an interface; with its last group the interface
    /// is no longer bound, so no longer filtered.
    LeaveInterface {
        interface: String,
        group: String,
    },
    ListPrefixLists,
    /// Creates or replaces a prefix list.
    SetPrefixList {
        list: schema::List,
    },
    /// Refused while a rule references it.
    DeletePrefixList {
        id: String,
    },
    ListPortLists,
    /// Creates or replaces a port list.
    SetPortList {
        list: schema::List,
    },
    /// Refused while a rule references it.
    DeletePortList {
        id: String,
    },
    /// The merged, ordered rules of an interface, each with its group.
    EffectiveRules {
        interface: String,
    },
    /// What would happen to a described packet, and what decides it.
    Diagnose(Probe),
    /// Tracked sessions, of one interface or all.
    Sessions {
        #[serde(default)]
        interface: Option<String>,
    },
    /// Forgets every tracked session (their next packets are decided by the
    /// rules again).
    FlushSessions,
    /// Packets (and bytes) decided so far: per reason, per interface and
    /// verdict, per rule.
    Counters,
    /// Recent dropped packets (the last 1024), or those numbered after
    /// `after` (to follow them).
    Drops {
        #[serde(default)]
        after: Option<u64>,
    },
    /// Re-reads the config file and makes it the desired state. Refused
    /// when changes made through the API would be lost, unless
    /// `discard_api_changes`; refused always when a group under deletion
    /// protection would go.
    Reload {
        #[serde(default)]
        discard_api_changes: bool,
    },
    /// The desired state as a config file (SPEC §7).
    Export,
    /// A group's redundant, shadowed and exposed rules ([`crate::health`]);
    /// `remove` deletes the redundant ones in one change.
    HealthCheck {
        group: String,
        #[serde(default)]
        remove: bool,
    },
}

impl Request {
    pub(super) fn verb(&self) -> &'static str {
        match self {
            Request::DescribeGroups { .. } => "DescribeGroups",
            Request::CreateGroup { .. } => "CreateGroup",
            Request::ModifyGroup { .. } => "ModifyGroup",
            Request::DeleteGroup { .. } => "DeleteGroup",
            Request::CloneGroup { .. } => "CloneGroup",
            Request::ExportGroup { .. } => "ExportGroup",
            Request::ImportGroup { .. } => "ImportGroup",
            Request::AuthorizeRule { .. } => "AuthorizeRule",
            Request::RevokeRule { .. } => "RevokeRule",
            Request::ModifyRule { .. } => "ModifyRule",
            Request::ListInterfaces => "ListInterfaces",
            Request::JoinInterface { .. } => "JoinInterface",
            Request::LeaveInterface { .. } => "LeaveInterface",
            Request::ListPrefixLists => "ListPrefixLists",
            Request::SetPrefixList { .. } => "SetPrefixList",
            Request::DeletePrefixList { .. } => "DeletePrefixList",
            Request::ListPortLists => "ListPortLists",
            Request::SetPortList { .. } => "SetPortList",
            Request::DeletePortList { .. } => "DeletePortList",
            Request::EffectiveRules { .. } => "EffectiveRules",
            Request::Diagnose(_) => "Diagnose",
            Request::Sessions { .. } => "Sessions",
            Request::FlushSessions => "FlushSessions",
            Request::Counters => "Counters",
            Request::Drops { .. } => "Drops",
            Request::Reload { .. } => "Reload",
            Request::Export => "Export",
            Request::HealthCheck { .. } => "HealthCheck",
            Request::ListSnapshotPolicies => "ListSnapshotPolicies",
            Request::CreateSnapshotPolicy { .. } => "CreateSnapshotPolicy",
            Request::ModifySnapshotPolicy { .. } => "ModifySnapshotPolicy",
            Request::DeleteSnapshotPolicy { .. } => "DeleteSnapshotPolicy",
            Request::AssociateSnapshotPolicy { .. } => "AssociateSnapshotPolicy",
            Request::DisassociateSnapshotPolicy { .. } => "DisassociateSnapshotPolicy",
            Request::ListSnapshots { .. } => "ListSnapshots",
            Request::DiffSnapshot { .. } => "DiffSnapshot",
            Request::RestoreSnapshot { .. } => "RestoreSnapshot",
            Request::DatastoreStatus => "DatastoreStatus",
            Request::DatastorePush { .. } => "DatastorePush",
        }
    }
}

/// A packet to diagnose, as the instance behind `interface` sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub interface: String,
    pub direction: Direction,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `gre` or a number 0..=255.
    pub protocol: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(default)]
    pub src_port: u16,
    #[serde(default)]
    pub dst_port: u16,
    /// ICMP type and code; ICMP without a type is an echo request.
    #[serde(default)]
    pub icmp_type: Option<u8>,
    #[serde(default)]
    pub icmp_code: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// A change was applied (and persisted); `id` names a created rule.
    Done {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Groups(Vec<GroupInfo>),
    Interfaces(Vec<InterfaceInfo>),
    Lists(Vec<schema::List>),
    EffectiveRules(Effective),
    Diagnosis(Diagnosis),
    Sessions(Vec<SessionInfo>),
    Counters(Counters),
    Drops(Vec<crate::drops::Drop>),
    Export {
        toml: String,
    },
    Health(crate::health::HealthReport),
    /// A group in ECS's shape ([`crate::ecs`]).
    EcsGroup(crate::ecs::SecurityGroupAttribute),
    /// What an import added, skipped and refused.
    Import(crate::ecs::ImportReport),
    SnapshotPolicies(Vec<schema::SnapshotPolicy>),
    Snapshots(super::snapshot::SnapshotList),
    SnapshotDiff(Box<crate::snapshots::SnapshotDiff>),
    Datastore(Box<super::datastore::DatastoreInfo>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub group: schema::Group,
    /// Interfaces bound to it.
    pub interfaces: Vec<String>,
    /// Rules of other groups that name it (`group/direction/rule id`).
    pub referenced_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    pub name: String,
    pub mode: String,
    pub addresses: Vec<String>,
    pub security_groups: Vec<String>,
    /// Whether the interface exists (bindings to a missing one wait).
    pub present: bool,
    /// Why a present interface is not enforced: its link type is one sg
    /// cannot parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_enforced: Option<String>,
}

/// The effective rules of an interface (SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effective {
    pub interface: String,
    pub mode: String,
    pub security_groups: Vec<String>,
    /// The instance's addresses: members of its groups, except link-local
    /// ones (unique on one link only).
    pub instance_addresses: Vec<String>,
    pub ingress: DirectionRules,
    pub egress: DirectionRules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionRules {
    /// In evaluation order: the first that matches decides.
    pub rules: Vec<EffectiveRule>,
    /// When none matches.
    pub default_policy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveRule {
    /// 1-based evaluation order.
    pub position: usize,
    /// `None` for the hidden intra-group accept.
    pub group: Option<String>,
    pub id: String,
    pub policy: String,
    pub priority: Option<u8>,
    pub ip_protocol: String,
    /// As written: a range or a port list id.
    pub port_range: String,
    pub source_port_range: Option<String>,
    /// As written: a CIDR, a group or a prefix list.
    pub remote: String,
    /// What `remote` stands for now.
    pub remote_addresses: Vec<String>,
    pub local: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub verdict: String,
    /// `rule`, `default`, `intra-group`, `builtin`, `session`,
    /// `session-ended`, `spoofed`.
    pub decided_by: String,
    pub group: Option<String>,
    pub rule: Option<String>,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub interface: String,
    pub protocol: String,
    pub local: String,
    pub local_port: u16,
    pub remote: String,
    pub remote_port: u16,
    /// `inbound` or `outbound`: the direction of its first packet.
    pub opened: String,
    /// `open` (not TCP), `half-open`, `established`, `closed` (TCP), or
    /// `ended` (by a drop rule: its packets are dropped both ways).
    #[serde(default)]
    pub state: String,
    pub idle_secs: u64,
    /// Seconds until it expires without traffic (by its state's timeout);
    /// 0 when expired (and waiting to be evicted), and when ended (it stays
    /// while a drop rule matches it).
    pub expires_in_secs: u64,
    /// Whether it is in the answered session table (the other side has
    /// answered, or a drop rule ended it), which a flood of new flows
    /// cannot evict; false: in the unanswered table.
    #[serde(default)]
    pub answered: bool,
}

/// What the kernel counted (SPEC §6): per decision reason, per interface
/// and verdict, per rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub reasons: Vec<ReasonCount>,
    pub interfaces: Vec<InterfaceCount>,
    pub rules: Vec<RuleCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonCount {
    pub reason: String,
    pub verdict: String,
    pub packets: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceCount {
    pub interface: String,
    /// `inbound` or `outbound`, for the instance.
    pub direction: String,
    pub verdict: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCount {
    pub interface: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `None` for the hidden intra-group accept.
    pub group: Option<String>,
    pub rule: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A request line: the version first, so that a newer client is told
/// which version to speak rather than that its verb is unknown.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON request line: {e}"))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not supported; this sgd speaks version {VERSION}"
            ));
        }
        None => {
            return Err(format!(
                "a request line needs the protocol version: {{\"v\":{VERSION},\"request\":{{...}}}}"
            ));
        }
    }
    let line: RequestLine =
        serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))?;
    Ok(line.request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_is_versioned_json_lines() {
        let line = r#"{"v":1,"request":{"verb":"DescribeGroups","group":"sg-web"}}"#;
        assert_eq!(
            parse_request(line).unwrap(),
            Request::DescribeGroups {
                group: Some("sg-web".into())
            }
        );
        let line = r#"{"v":1,"request":{"verb":"Diagnose","interface":"eth0","direction":"ingress","protocol":"tcp","src":"192.0.2.1","dst":"192.0.2.2","dst_port":22}}"#;
        assert!(matches!(parse_request(line).unwrap(), Request::Diagnose(p) if p.dst_port == 22));
        assert!(
            parse_request(r#"{"v":2,"request":{"verb":"Export"}}"#)
                .unwrap_err()
                .contains("this sgd speaks version 1")
        );
        let e = parse_request(
            r#"{"v":1,"request":{"verb":"RevokeRule","group":"g","id":"x","bogus":1}}"#,
        )
        .unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse_request(r#"{"v":1,"request":{"verb":"AuthorizeRule","group":"g","direction":"ingress","rule":{"prot":"tcp"}}}"#).unwrap_err();
        assert!(e.contains("prot"), "{e}");
        let r = ResponseLine {
            v: VERSION,
            response: Response::Ok(Reply::Done {
                message: "m".into(),
                id: None,
            }),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"v":1,"response":{"ok":{"kind":"done","data":{"message":"m"}}}}"#
        );
        assert_eq!(serde_json::from_str::<ResponseLine>(&text).unwrap(), r);
    }
}
