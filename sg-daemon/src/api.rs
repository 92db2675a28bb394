//! The control API (SPEC §5, §6): newline-delimited JSON over a Unix stream
//! socket, `<runtime_dir>/sgd.sock`, for root only.
//!
//! One request per line, one response per line, in order, on as many
//! requests per connection as the client likes:
//!
//! ```text
//! → {"v":1,"request":{"verb":"DescribeGroups","group":"sg-web"}}
//! ← {"v":1,"response":{"ok":{"kind":"groups","data":[...]}}}
//! → {"v":1,"request":{"verb":"DeleteGroup","group":"sg-web"}}
//! ← {"v":1,"response":{"error":"group sg-web cannot be deleted: ..."}}
//! ```
//!
//! `v` is the protocol version ([`VERSION`]); a request of another version
//! is answered with an error naming the one this daemon speaks. Verbs and
//! their fields are [`Request`]'s variants; rules, groups and lists use the
//! config file's field names (SPEC §7, [`store`]).
//!
//! [`serve`] accepts connections and forwards each request, as a [`Call`],
//! to the daemon's main loop, which runs [`handle`] on it: requests are
//! executed one at a time, between the loop's other work. Every change
//! builds the whole new desired state, validates it exactly as a config
//! file (serialised and run through [`crate::config::parse`]), applies it
//! with [`Daemon::apply`], and only then persists it (see [`store`] for how
//! the API's state and the config file relate). On any error nothing
//! changes and the reason is returned.

use std::{
    io::{self, BufRead as _, Write as _},
    net::IpAddr,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sg_common::{CtKey, CtValue, FAMILY_V4, INBOUND};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, error, info, warn};

use crate::{
    compile::{Origin, build_table},
    config::ConfigErrors,
    daemon::{ApplyReport, Daemon},
    dataplane::Dataplane,
    model::{self, Addresses, BindingMode, Config, PortRange},
    reference::{self, BuiltIn, DecidedBy, Fragment, Interface, Packet},
    store::{self, Document, Store},
};

/// The JSON library of the wire format, for clients decoding it (and
/// `sgctl --output json`) into the types below.
pub use serde_json;

/// The protocol version this daemon and `sgctl` speak.
pub const VERSION: u32 = 1;

/// The socket's name in `runtime_dir`.
pub const SOCKET_NAME: &str = "sgd.sock";

/// Where `sgctl` looks by default (`runtime_dir` defaults to `/run/sg`).
pub const DEFAULT_SOCKET: &str = "/run/sg/sgd.sock";

/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// The control socket of a daemon whose `runtime_dir` is `runtime_dir`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

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

/// A rule direction, as seen from the instance: the model's.
pub use crate::model::Direction;

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
        group: store::Group,
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
    /// Adds a rule; without an `id` one is generated. Answers with the id.
    AuthorizeRule {
        group: String,
        direction: Direction,
        rule: store::Rule,
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
        rule: store::Rule,
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
        list: store::List,
    },
    /// Refused while a rule references it.
    DeletePrefixList {
        id: String,
    },
    ListPortLists,
    /// Creates or replaces a port list.
    SetPortList {
        list: store::List,
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
    /// Re-reads the config file and makes it the desired state (API changes
    /// since it was loaded are discarded).
    Reload,
    /// The desired state as a config file (SPEC §7).
    Export,
}

impl Request {
    fn verb(&self) -> &'static str {
        match self {
            Request::DescribeGroups { .. } => "DescribeGroups",
            Request::CreateGroup { .. } => "CreateGroup",
            Request::ModifyGroup { .. } => "ModifyGroup",
            Request::DeleteGroup { .. } => "DeleteGroup",
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
            Request::Reload => "Reload",
            Request::Export => "Export",
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
    Lists(Vec<store::List>),
    EffectiveRules(Effective),
    Diagnosis(Diagnosis),
    Sessions(Vec<SessionInfo>),
    Counters(Counters),
    Drops(Vec<crate::drops::Drop>),
    Export {
        toml: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub group: store::Group,
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
}

/// The effective rules of an interface (SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effective {
    pub interface: String,
    pub mode: String,
    pub security_groups: Vec<String>,
    /// The instance's addresses (members of its groups).
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
    pub idle_secs: u64,
    /// Seconds until it expires without traffic; 0 when expired (and
    /// waiting to be evicted).
    pub expires_in_secs: u64,
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

/// A request on its way to the main loop, and where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

// ---------------------------------------------------------------------------
// Request handling (the main loop's side)

/// Executes one request against the desired state and the dataplane.
/// Changes are applied and persisted, or nothing changes.
pub fn handle(
    state: &mut Store,
    daemon: &mut Daemon,
    drops: &crate::drops::DropLog,
    request: Request,
) -> Response {
    let verb = request.verb();
    let result = match request {
        Request::Drops { after } => Ok(Reply::Drops(drops.since(after))),
        Request::Sessions { interface } => {
            sessions(daemon.dataplane(), state.config(), interface.as_deref())
        }
        Request::FlushSessions => flush_sessions(daemon.dataplane_mut()),
        Request::Counters => counters(daemon),
        Request::Diagnose(probe) => {
            let live = daemon.dataplane().sessions();
            let live = match &live {
                Ok(s) => Some(s.as_slice()),
                Err(e) => {
                    warn!("diagnose: cannot read the sessions: {e:#}");
                    None
                }
            };
            diagnose(state.config(), &probe, live)
        }
        other => return handle_desired(state, other, &mut |c| daemon.apply(c)),
    };
    if let Err(e) = &result {
        debug!(verb, "request failed: {e}");
    }
    into_response(result)
}

fn into_response(result: Result<Reply, String>) -> Response {
    match result {
        Ok(reply) => Response::Ok(reply),
        Err(e) => Response::Error(e.trim_end().to_owned()),
    }
}

/// The requests about the desired state, with `apply` making the host
/// enforce a config ([`Daemon::apply`] in the daemon; tests pass their
/// own).
pub fn handle_desired(
    state: &mut Store,
    request: Request,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Response {
    let verb = request.verb();
    let result = match request {
        Request::DescribeGroups { group } => describe_groups(state.document(), group.as_deref()),
        Request::ListInterfaces => Ok(list_interfaces(state.document())),
        Request::ListPrefixLists => Ok(Reply::Lists(state.document().prefix_list.clone())),
        Request::ListPortLists => Ok(Reply::Lists(state.document().port_list.clone())),
        Request::EffectiveRules { interface } => {
            effective_rules(state.document(), state.config(), &interface).map(Reply::EffectiveRules)
        }
        Request::Export => state.export().map(|toml| Reply::Export { toml }),
        Request::Reload => reload(state, apply),
        edit => {
            let mut doc = state.document().clone();
            match edit_document(&mut doc, edit) {
                Err(e) => Err(e),
                Ok((message, id)) => change(state, doc, apply).map(|report| Reply::Done {
                    message: format!("{message}{}", report_note(&report)),
                    id,
                }),
            }
        }
    };
    match &result {
        Ok(Reply::Done { message, .. }) => info!(verb, "api: {message}"),
        Ok(_) => {}
        Err(e) => info!(verb, "api request refused: {e}"),
    }
    into_response(result)
}

/// Validates, applies and persists a new desired state; on any error
/// nothing changes.
fn change(
    state: &mut Store,
    mut doc: Document,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<ApplyReport, String> {
    let config = doc
        .validate(Path::new("request"))
        .map_err(|e| explain(&doc, &e))?;
    doc.fill_rule_ids(&config);
    let report = apply(&config).map_err(|e| {
        restore(state.config(), apply);
        format!("not applied: {e:#}")
    })?;
    if let Err(e) = state.commit(doc, config) {
        restore(state.config(), apply);
        return Err(format!("not applied: the state cannot be persisted: {e}"));
    }
    Ok(report)
}

/// After a failed change: makes the host enforce the state in force again,
/// in case the failure came half-way through the interfaces.
fn restore(config: &Config, apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>) {
    if let Err(e) = apply(config) {
        error!("restoring the rules in force after a failed change: {e:#}");
    }
}

fn reload(
    state: &mut Store,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<Reply, String> {
    let (doc, config) = state.read_config_file()?;
    let report = apply(&config).map_err(|e| {
        restore(state.config(), apply);
        format!("not applied: {e:#}")
    })?;
    match state.reset_to_file(doc, config) {
        Ok(discarded) => {
            let mut message = format!("reloaded {}", state.config_file().display());
            if discarded {
                message.push_str(&format!(
                    "; changes made through the API were discarded ({} removed)",
                    state.state_file().display()
                ));
            }
            message.push_str(&report_note(&report));
            Ok(Reply::Done { message, id: None })
        }
        Err(e) => {
            restore(state.config(), apply);
            Err(format!("not applied: {e}"))
        }
    }
}

fn report_note(report: &ApplyReport) -> String {
    let mut note = String::new();
    if !report.missing.is_empty() {
        note.push_str(&format!(
            "; not present on this host (enforced once they appear): {}",
            report.missing.join(", ")
        ));
    }
    if !report.released.is_empty() {
        note.push_str(&format!(
            "; no longer bound, so no longer filtered: {}",
            report.released.join(", ")
        ));
    }
    note
}

/// Config errors of a changed document, naming objects by id rather than
/// by position in a file the client never saw.
fn explain(doc: &Document, errors: &ConfigErrors) -> String {
    let lines: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{}: {}", friendly_field(doc, &e.field), e.message))
        .collect();
    format!("invalid: {}", lines.join("; "))
}

fn friendly_field(doc: &Document, field: &str) -> String {
    let mut objects = Vec::new();
    let mut rest = Vec::new();
    let mut group: Option<&store::Group> = None;
    for segment in field.split('.') {
        let indexed = segment
            .strip_suffix(']')
            .and_then(|s| s.split_once('['))
            .and_then(|(name, i)| Some((name, i.parse::<usize>().ok()?)));
        let named = match indexed {
            Some(("security_group", i)) => doc.security_group.get(i).map(|g| {
                group = Some(g);
                format!("group {}", g.id)
            }),
            Some((dir @ ("ingress" | "egress"), i)) => group.map(|g| {
                match g
                    .rules(if dir == "ingress" {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    })
                    .get(i)
                    .and_then(|r| r.id.as_deref())
                {
                    Some(id) => format!("{dir} rule {id}"),
                    None => format!("{dir} rule #{}", i + 1),
                }
            }),
            Some(("interface", i)) => doc
                .interface
                .get(i)
                .map(|b| format!("interface {}", b.name)),
            Some(("prefix_list", i)) => doc
                .prefix_list
                .get(i)
                .map(|l| format!("prefix list {}", l.id)),
            Some(("port_list", i)) => doc.port_list.get(i).map(|l| format!("port list {}", l.id)),
            _ => None,
        };
        match named {
            Some(n) if rest.is_empty() => objects.push(n),
            _ => rest.push(segment),
        }
    }
    match (objects.is_empty(), rest.is_empty()) {
        (true, _) => field.to_owned(),
        (false, true) => objects.join(" "),
        (false, false) => format!("{}: {}", objects.join(" "), rest.join(".")),
    }
}

/// Applies an editing request to a copy of the desired state. Returns what
/// it did and, for a new rule, its id.
fn edit_document(doc: &mut Document, request: Request) -> Result<(String, Option<String>), String> {
    match request {
        Request::CreateGroup { group } => {
            if group.id.is_empty() {
                return Err("a group needs an id".into());
            }
            if doc.group(&group.id).is_some() {
                return Err(format!("group {} exists", group.id));
            }
            let message = format!("created group {}", group.id);
            doc.security_group.push(group);
            Ok((message, None))
        }
        Request::ModifyGroup {
            group,
            name,
            description,
            inner_access_policy,
            deletion_protection,
            members,
        } => {
            let g = find_group(doc, &group)?;
            let mut changed = Vec::new();
            if let Some(name) = name {
                g.name = non_empty(name);
                changed.push("name");
            }
            if let Some(description) = description {
                g.description = non_empty(description);
                changed.push("description");
            }
            if let Some(policy) = inner_access_policy {
                g.inner_access_policy = non_empty(policy);
                changed.push("inner_access_policy");
            }
            if let Some(protect) = deletion_protection {
                g.deletion_protection = protect;
                changed.push("deletion_protection");
            }
            if let Some(members) = members {
                g.members = members;
                changed.push("members");
            }
            if changed.is_empty() {
                return Err("nothing to modify: give at least one field".into());
            }
            Ok((
                format!("modified {} of group {group}", changed.join(", ")),
                None,
            ))
        }
        Request::DeleteGroup { group } => {
            let g = doc
                .group(&group)
                .ok_or_else(|| format!("no group {group}"))?;
            let mut reasons = Vec::new();
            if g.deletion_protection {
                reasons.push(format!(
                    "it is under deletion protection (turn it off first: sgctl group modify {group} --deletion-protection false)"
                ));
            }
            let bound = bound_interfaces(doc, &group);
            if !bound.is_empty() {
                reasons.push(format!(
                    "it is bound to interface {} (leave it first)",
                    bound.join(", ")
                ));
            }
            let referrers = referrers(doc, &group);
            if !referrers.is_empty() {
                reasons.push(format!(
                    "rules of other groups reference it: {}",
                    referrers.join(", ")
                ));
            }
            if !reasons.is_empty() {
                return Err(format!(
                    "group {group} cannot be deleted: {}",
                    reasons.join("; ")
                ));
            }
            doc.security_group.retain(|g| g.id != group);
            Ok((format!("deleted group {group}"), None))
        }
        Request::AuthorizeRule {
            group,
            direction,
            mut rule,
        } => {
            let g = find_group(doc, &group)?;
            let id = match rule.id.as_deref() {
                Some("") | None => next_rule_id(g, direction),
                Some(id) => {
                    if find_rule(g, None, id).is_some() {
                        return Err(format!("group {group} already has a rule {id}"));
                    }
                    id.to_owned()
                }
            };
            rule.id = Some(id.clone());
            g.rules_mut(direction).push(rule);
            Ok((
                format!("added {} rule {id} to group {group}", direction.name()),
                Some(id),
            ))
        }
        Request::RevokeRule {
            group,
            direction,
            id,
        } => {
            let g = find_group(doc, &group)?;
            let (dir, i) =
                find_rule(g, direction, &id).ok_or_else(|| no_rule(&group, direction, &id))?;
            g.rules_mut(dir).remove(i);
            Ok((
                format!("removed {} rule {id} from group {group}", dir.name()),
                None,
            ))
        }
        Request::ModifyRule {
            group,
            direction,
            id,
            rule,
        } => {
            let g = find_group(doc, &group)?;
            let (dir, i) =
                find_rule(g, direction, &id).ok_or_else(|| no_rule(&group, direction, &id))?;
            let target = &mut g.rules_mut(dir)[i];
            patch_rule(target, rule, dir)?;
            Ok((
                format!("modified {} rule {id} of group {group}", dir.name()),
                None,
            ))
        }
        Request::JoinInterface {
            interface,
            group,
            mode,
            addresses,
        } => {
            if doc.group(&group).is_none() {
                return Err(format!("no group {group}"));
            }
            let binding = match doc.interface.iter_mut().find(|b| b.name == interface) {
                Some(b) => b,
                None => {
                    doc.interface.push(store::Binding {
                        name: interface.clone(),
                        ..Default::default()
                    });
                    doc.interface.last_mut().expect("just pushed")
                }
            };
            if binding.security_groups.contains(&group) {
                return Err(format!("interface {interface} is already in group {group}"));
            }
            binding.security_groups.push(group.clone());
            if let Some(mode) = mode {
                binding.mode = non_empty(mode);
            }
            if let Some(addresses) = addresses {
                binding.addresses = addresses;
            }
            Ok((format!("interface {interface} joined group {group}"), None))
        }
        Request::LeaveInterface { interface, group } => {
            let b = doc
                .interface
                .iter_mut()
                .find(|b| b.name == interface)
                .ok_or_else(|| format!("interface {interface} is not bound"))?;
            let before = b.security_groups.len();
            b.security_groups.retain(|g| *g != group);
            if b.security_groups.len() == before {
                return Err(format!("interface {interface} is not in group {group}"));
            }
            if b.security_groups.is_empty() {
                doc.interface.retain(|b| b.name != interface);
            }
            Ok((format!("interface {interface} left group {group}"), None))
        }
        Request::SetPrefixList { list } => {
            Ok((set_list(&mut doc.prefix_list, list, "prefix list"), None))
        }
        Request::SetPortList { list } => {
            Ok((set_list(&mut doc.port_list, list, "port list"), None))
        }
        Request::DeletePrefixList { id } => {
            let users = rules_where(doc, |r| {
                r.source_prefix_list_id.as_deref() == Some(&id)
                    || r.dest_prefix_list_id.as_deref() == Some(&id)
            });
            let users = users.into_iter().map(|(_, name)| name).collect();
            delete_list(&mut doc.prefix_list, &id, "prefix list", users)
        }
        Request::DeletePortList { id } => {
            let users = rules_where(doc, |r| r.port_range_list_id.as_deref() == Some(&id));
            let users = users.into_iter().map(|(_, name)| name).collect();
            delete_list(&mut doc.port_list, &id, "port list", users)
        }
        other => Err(format!("{} changes nothing here", other.verb())),
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn find_group<'a>(doc: &'a mut Document, id: &str) -> Result<&'a mut store::Group, String> {
    doc.group_mut(id).ok_or_else(|| format!("no group {id}"))
}

fn find_rule(g: &store::Group, dir: Option<Direction>, id: &str) -> Option<(Direction, usize)> {
    [Direction::Ingress, Direction::Egress]
        .into_iter()
        .filter(|d| dir.is_none_or(|want| want == *d))
        .find_map(|d| {
            g.rules(d)
                .iter()
                .position(|r| r.id.as_deref() == Some(id))
                .map(|i| (d, i))
        })
}

fn no_rule(group: &str, dir: Option<Direction>, id: &str) -> String {
    match dir {
        Some(d) => format!("group {group} has no {} rule {id}", d.name()),
        None => format!("group {group} has no rule {id}"),
    }
}

/// `<group>/<direction>/<n>`, the file's scheme, with the first `n` past
/// the rule count that no rule of the group uses.
fn next_rule_id(g: &store::Group, dir: Direction) -> String {
    let mut n = g.rules(dir).len() + 1;
    loop {
        let id = format!("{}/{}/{n}", g.id, dir.name());
        if find_rule(g, None, &id).is_none() {
            return id;
        }
        n += 1;
    }
}

/// ModifyRule: the given fields replace the rule's; the remote side and the
/// destination ports are replaced as a whole; an empty string removes a
/// field.
fn patch_rule(rule: &mut store::Rule, patch: store::Rule, dir: Direction) -> Result<(), String> {
    if let Some(id) = &patch.id
        && rule.id.as_ref() != Some(id)
    {
        return Err("a rule's id cannot be changed; revoke it and authorize a new one".into());
    }
    let ingress = dir == Direction::Ingress;
    let remote_given = if ingress {
        patch.source_cidr_ip.is_some()
            || patch.source_group_id.is_some()
            || patch.source_prefix_list_id.is_some()
    } else {
        patch.dest_cidr_ip.is_some()
            || patch.dest_group_id.is_some()
            || patch.dest_prefix_list_id.is_some()
    };
    if remote_given {
        if ingress {
            rule.source_cidr_ip = None;
            rule.source_group_id = None;
            rule.source_prefix_list_id = None;
        } else {
            rule.dest_cidr_ip = None;
            rule.dest_group_id = None;
            rule.dest_prefix_list_id = None;
        }
    }
    if patch.port_range.is_some() || patch.port_range_list_id.is_some() {
        rule.port_range = None;
        rule.port_range_list_id = None;
    }
    fn set(slot: &mut Option<String>, value: Option<String>) {
        if let Some(v) = value {
            *slot = non_empty(v);
        }
    }
    set(&mut rule.policy, patch.policy);
    set(&mut rule.port_range, patch.port_range);
    set(&mut rule.port_range_list_id, patch.port_range_list_id);
    set(&mut rule.source_port_range, patch.source_port_range);
    set(&mut rule.source_cidr_ip, patch.source_cidr_ip);
    set(&mut rule.source_group_id, patch.source_group_id);
    set(&mut rule.source_prefix_list_id, patch.source_prefix_list_id);
    set(&mut rule.dest_cidr_ip, patch.dest_cidr_ip);
    set(&mut rule.dest_group_id, patch.dest_group_id);
    set(&mut rule.dest_prefix_list_id, patch.dest_prefix_list_id);
    set(&mut rule.description, patch.description);
    if patch.priority.is_some() {
        rule.priority = patch.priority;
    }
    if patch.ip_protocol.is_some() {
        rule.ip_protocol = patch.ip_protocol;
    }
    Ok(())
}

fn set_list(lists: &mut Vec<store::List>, list: store::List, kind: &str) -> String {
    match lists.iter_mut().find(|l| l.id == list.id) {
        Some(old) => {
            let message = format!("replaced {kind} {}", list.id);
            *old = list;
            message
        }
        None => {
            let message = format!("created {kind} {}", list.id);
            lists.push(list);
            message
        }
    }
}

fn delete_list(
    lists: &mut Vec<store::List>,
    id: &str,
    kind: &str,
    users: Vec<String>,
) -> Result<(String, Option<String>), String> {
    if !lists.iter().any(|l| l.id == id) {
        return Err(format!("no {kind} {id}"));
    }
    if !users.is_empty() {
        return Err(format!(
            "{kind} {id} cannot be deleted: rules reference it: {}",
            users.join(", ")
        ));
    }
    lists.retain(|l| l.id != id);
    Ok((format!("deleted {kind} {id}"), None))
}

/// Every rule for which `pred` holds: its group, and how to name it.
fn rules_where(doc: &Document, pred: impl Fn(&store::Rule) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in &doc.security_group {
        for (dir, rules) in [("ingress", &g.ingress), ("egress", &g.egress)] {
            for r in rules.iter().filter(|r| pred(r)) {
                let id = r.id.as_deref().unwrap_or("(new)");
                out.push((g.id.clone(), format!("{} {dir} rule {id}", g.id)));
            }
        }
    }
    out
}

fn bound_interfaces(doc: &Document, group: &str) -> Vec<String> {
    doc.interface
        .iter()
        .filter(|b| b.security_groups.iter().any(|g| g == group))
        .map(|b| b.name.clone())
        .collect()
}

/// Rules of other groups that reference `group`.
fn referrers(doc: &Document, group: &str) -> Vec<String> {
    rules_where(doc, |r| r.group_reference() == Some(group))
        .into_iter()
        .filter(|(g, _)| g != group)
        .map(|(_, name)| name)
        .collect()
}

fn describe_groups(doc: &Document, only: Option<&str>) -> Result<Reply, String> {
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

fn list_interfaces(doc: &Document) -> Reply {
    Reply::Interfaces(
        doc.interface
            .iter()
            .map(|b| InterfaceInfo {
                name: b.name.clone(),
                mode: b.mode.clone().unwrap_or_else(|| "instance".into()),
                addresses: b.addresses.clone(),
                security_groups: b.security_groups.clone(),
                present: nix::net::if_::if_nametoindex(b.name.as_str()).is_ok(),
            })
            .collect(),
    )
}

fn binding<'a>(config: &'a Config, interface: &str) -> Result<&'a model::InterfaceBinding, String> {
    config
        .interfaces
        .iter()
        .find(|b| b.name == interface)
        .ok_or_else(|| format!("interface {interface} is not bound"))
}

fn mode_name(mode: BindingMode) -> &'static str {
    match mode {
        BindingMode::Instance => "instance",
        BindingMode::Hypervisor => "hypervisor",
    }
}

fn policy_name(accept: bool) -> &'static str {
    if accept { "accept" } else { "drop" }
}

fn ports_text(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn effective_rules(doc: &Document, config: &Config, interface: &str) -> Result<Effective, String> {
    let b = binding(config, interface)?;
    let addresses = Addresses::resolve(config, |b| crate::daemon::interface_addresses(&b.name));
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

/// A protocol of a packet: a name or a number (not `all`).
pub fn parse_packet_protocol(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(reference::TCP),
        "udp" => Some(reference::UDP),
        "icmp" => Some(reference::ICMP),
        "icmpv6" => Some(reference::ICMPV6),
        "gre" => Some(model::Protocol::GRE),
        other => other.parse().ok(),
    }
}

fn protocol_name(p: u8) -> String {
    model::Protocol::Number(p).to_string()
}

/// Current `CLOCK_BOOTTIME`, the kernel's session clock, in nanoseconds.
fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn key_addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

fn addr_key(addr: IpAddr) -> (u8, [u8; 16]) {
    crate::compile::addr_bytes(&ipnet::IpNet::from(addr))
}

fn diagnose(
    config: &Config,
    probe: &Probe,
    live_sessions: Option<&[(CtKey, CtValue)]>,
) -> Result<Reply, String> {
    let b = binding(config, &probe.interface)?;
    let proto = parse_packet_protocol(&probe.protocol).ok_or_else(|| {
        format!(
            "{:?} is not a protocol; allowed: tcp, udp, icmp, icmpv6, gre or a number 0..=255",
            probe.protocol
        )
    })?;
    if probe.src.is_ipv4() != probe.dst.is_ipv4() {
        return Err("src and dst must both be IPv4 or both IPv6".into());
    }
    let icmp = match (proto, probe.icmp_type) {
        (reference::ICMP | reference::ICMPV6, Some(t)) => Some((t, probe.icmp_code.unwrap_or(0))),
        (reference::ICMP, None) => Some((8, 0)),
        (reference::ICMPV6, None) => Some((128, 0)),
        (_, Some(_)) => return Err("icmp_type is for icmp and icmpv6 only".into()),
        (_, None) => None,
    };
    let pkt = Packet {
        src: probe.src,
        dst: probe.dst,
        proto,
        src_port: probe.src_port,
        dst_port: probe.dst_port,
        icmp,
        fragment: Fragment::No,
        quoted: None,
    };
    let addresses = Addresses::resolve(config, |b| crate::daemon::interface_addresses(&b.name));
    let iface = Interface {
        config,
        binding: b,
        addresses: &addresses,
    };
    let dir = probe.direction;
    let fresh = reference::decide(&iface, &mut reference::State::default(), dir, &pkt);

    // The kernel's order: anti-spoofing and the network built-ins come
    // before sessions; everything else after them.
    let before_sessions = matches!(
        fresh.by,
        DecidedBy::Spoofed | DecidedBy::BuiltIn(BuiltIn::NeighborDiscovery | BuiltIn::DhcpClient)
    );
    if !before_sessions
        && let Some(live) = live_sessions
        && let Ok(ifindex) = nix::net::if_::if_nametoindex(b.name.as_str())
        && let Some(found) = find_session(live, ifindex, &pkt, probe.direction, config)
    {
        return Ok(Reply::Diagnosis(session_diagnosis(&iface, found)));
    }
    Ok(Reply::Diagnosis(explain_decision(config, &fresh, dir)))
}

struct FoundSession {
    opened_inbound: bool,
    idle_secs: u64,
    opening: Packet,
}

fn find_session(
    live: &[(CtKey, CtValue)],
    ifindex: u32,
    pkt: &Packet,
    dir: Direction,
    config: &Config,
) -> Option<FoundSession> {
    let (local, remote, local_port, remote_port) = match dir {
        Direction::Ingress => (pkt.dst, pkt.src, pkt.dst_port, pkt.src_port),
        Direction::Egress => (pkt.src, pkt.dst, pkt.src_port, pkt.dst_port),
    };
    let (family, local_bytes) = addr_key(local);
    let (_, remote_bytes) = addr_key(remote);
    let now = boot_time_ns();
    let timeout_ns = config
        .daemon
        .session_timeout_secs
        .saturating_mul(1_000_000_000);
    let (_, value) = live.iter().find(|(k, v)| {
        k.ifindex == ifindex
            && k.proto == pkt.proto
            && k.family == family
            && k.local == local_bytes
            && k.remote == remote_bytes
            && k.local_port == local_port
            && k.remote_port == remote_port
            && now.wrapping_sub(v.last_seen_ns) <= timeout_ns
    })?;
    let opened_inbound = value.opened as usize == INBOUND;
    let (src, dst, src_port, dst_port) = if opened_inbound {
        (remote, local, remote_port, local_port)
    } else {
        (local, remote, local_port, remote_port)
    };
    let icmp = match pkt.proto {
        reference::ICMP => Some((8, 0)),
        reference::ICMPV6 => Some((128, 0)),
        _ => None,
    };
    Some(FoundSession {
        opened_inbound,
        idle_secs: now.wrapping_sub(value.last_seen_ns) / 1_000_000_000,
        opening: Packet {
            src,
            dst,
            proto: pkt.proto,
            src_port,
            dst_port,
            icmp,
            fragment: Fragment::No,
            quoted: None,
        },
    })
}

/// A live session passes the packet, unless an explicit drop rule now
/// matches the packet that opened it (SPEC §3.6): then it ends.
fn session_diagnosis(iface: &Interface, s: FoundSession) -> Diagnosis {
    let opened = if s.opened_inbound {
        model::Direction::Ingress
    } else {
        model::Direction::Egress
    };
    let metadata: IpAddr = [100, 100, 100, 200].into();
    let is_metadata = opened == model::Direction::Egress && s.opening.dst == metadata;
    let recheck = reference::decide_by_rules(iface, opened, &s.opening);
    let way = if s.opened_inbound {
        "inbound"
    } else {
        "outbound"
    };
    if !is_metadata
        && !recheck.accept
        && let DecidedBy::Rule { group, id } = recheck.by
    {
        return Diagnosis {
            verdict: "drop".into(),
            decided_by: "session-ended".into(),
            explanation: format!(
                "a tracked session (opened {way}) exists, but drop rule {id} of group {group} matches the packet that opened it: the session ends at this packet"
            ),
            group: Some(group),
            rule: Some(id),
        };
    }
    Diagnosis {
        verdict: "accept".into(),
        decided_by: "session".into(),
        group: None,
        rule: None,
        explanation: format!(
            "a tracked session (opened {way}, idle {} s) passes it without rule evaluation",
            s.idle_secs
        ),
    }
}

fn explain_decision(config: &Config, d: &reference::Decision, dir: model::Direction) -> Diagnosis {
    let verdict = policy_name(d.accept).to_owned();
    let (decided_by, group, rule, explanation) = match &d.by {
        DecidedBy::Rule { group, id } => {
            let r = config
                .group(group)
                .and_then(|g| g.rules(dir).iter().find(|r| &r.id == id));
            let what = r.map_or(String::new(), |r| {
                format!(
                    " ({} {} ports {}, priority {}{})",
                    policy_name(r.policy == model::Policy::Accept),
                    r.protocol,
                    ports_text(&r.ports),
                    r.priority,
                    if r.description.is_empty() {
                        String::new()
                    } else {
                        format!(", {:?}", r.description)
                    }
                )
            });
            (
                "rule",
                Some(group.clone()),
                Some(id.clone()),
                format!("{} rule {id} of group {group} is the first that matches{what}", dir.name()),
            )
        }
        DecidedBy::IntraGroup => (
            "intra-group",
            None,
            None,
            "no rule matches; the remote address is a member of a bound group whose inner_access_policy is accept".to_owned(),
        ),
        DecidedBy::Default => {
            let text = match (d.accept, dir) {
                (true, _) => "no rule matches; basic groups accept outbound traffic by default",
                (false, model::Direction::Ingress) => {
                    "no rule matches; inbound traffic is dropped by default"
                }
                (false, model::Direction::Egress) => {
                    "no rule matches; enterprise groups drop everything no rule accepts"
                }
            };
            ("default", None, None, text.to_owned())
        }
        DecidedBy::BuiltIn(b) => {
            let text = match b {
                BuiltIn::Metadata => "built-in: outbound traffic to the metadata service 100.100.100.200 always passes",
                BuiltIn::Pmtud => "built-in: inbound path-MTU discovery (ICMP fragmentation needed, ICMPv6 packet too big) always passes",
                BuiltIn::NeighborDiscovery => "built-in: IPv6 neighbour and router discovery passes (daemon.builtin_neighbor_discovery)",
                BuiltIn::DhcpClient => "built-in: DHCP client exchanges pass (daemon.builtin_dhcp_client)",
                BuiltIn::SmtpBlocked => "built-in: outbound TCP to port 25 is blocked (daemon.block_smtp_egress; use 465)",
            };
            ("builtin", None, None, text.to_owned())
        }
        DecidedBy::Spoofed => (
            "spoofed",
            None,
            None,
            "the source is not one of the instance's addresses (hypervisor mode anti-spoofing)"
                .to_owned(),
        ),
        other => ("other", None, None, format!("{other:?}")),
    };
    Diagnosis {
        verdict,
        decided_by: decided_by.into(),
        group,
        rule,
        explanation,
    }
}

fn ifname(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("#{ifindex}");
    }
    // SAFETY: on success the name is NUL-terminated within `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn sessions(dp: &Dataplane, config: &Config, interface: Option<&str>) -> Result<Reply, String> {
    let only = match interface {
        Some(name) => Some(
            nix::net::if_::if_nametoindex(name)
                .map_err(|_| format!("no interface {name} on this host"))?,
        ),
        None => None,
    };
    let now = boot_time_ns();
    let timeout = config.daemon.session_timeout_secs;
    let mut out: Vec<SessionInfo> = dp
        .sessions()
        .map_err(|e| format!("reading the sessions: {e:#}"))?
        .into_iter()
        .filter(|(k, _)| only.is_none_or(|i| i == k.ifindex))
        .map(|(k, v)| {
            let idle = now.saturating_sub(v.last_seen_ns) / 1_000_000_000;
            SessionInfo {
                interface: ifname(k.ifindex),
                protocol: protocol_name(k.proto),
                local: key_addr(k.family, &k.local).to_string(),
                local_port: k.local_port,
                remote: key_addr(k.family, &k.remote).to_string(),
                remote_port: k.remote_port,
                opened: if v.opened as usize == INBOUND {
                    "inbound"
                } else {
                    "outbound"
                }
                .into(),
                idle_secs: idle,
                expires_in_secs: timeout.saturating_sub(idle),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (
            &a.interface,
            &a.remote,
            a.remote_port,
            &a.local,
            a.local_port,
        )
            .cmp(&(
                &b.interface,
                &b.remote,
                b.remote_port,
                &b.local,
                b.local_port,
            ))
    });
    Ok(Reply::Sessions(out))
}

fn flush_sessions(dp: &mut Dataplane) -> Result<Reply, String> {
    let n = dp.sessions().map(|s| s.len()).unwrap_or(0);
    dp.flush_sessions()
        .map_err(|e| format!("flushing the sessions: {e:#}"))?;
    info!(sessions = n, "api: flushed the tracked sessions");
    Ok(Reply::Done {
        message: format!("flushed {n} tracked sessions"),
        id: None,
    })
}

fn counters(daemon: &Daemon) -> Result<Reply, String> {
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
            direction: if k.dir as usize == INBOUND {
                "inbound"
            } else {
                "outbound"
            }
            .into(),
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

// ---------------------------------------------------------------------------
// The socket (the server's side)

/// A bound control socket; the socket file is removed when it is dropped
/// (if it is still this socket's, not a successor's).
#[derive(Debug)]
pub struct Listener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we created.
    id: (u64, u64),
}

/// Binds the control socket at `path`: creates its directory (mode 0755),
/// removes a stale socket left by a daemon that is gone, refuses to take
/// over one another daemon still answers on, and makes the socket mode
/// 0600. Needs no runtime, so `sgd` can bind before it says `READY=1`.
pub fn bind(path: &Path) -> anyhow::Result<Listener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "another sgd answers on {}; give each sgd its own runtime_dir",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => match std::fs::remove_file(path) {
            Ok(()) => info!(socket = %path.display(), "removed a stale control socket"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        },
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    listener.set_nonblocking(true)?;
    let meta = std::fs::metadata(path)?;
    Ok(Listener {
        listener,
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    })
}

/// Binds `socket` and serves it (see [`bind`] and [`Listener::serve`]).
pub async fn serve(socket: PathBuf, tx: mpsc::Sender<Call>) -> anyhow::Result<()> {
    bind(&socket)?.serve(tx).await
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections for ever, each on its own task: only root's
    /// (SO_PEERCRED) are served, every request is sent to `tx` as a
    /// [`Call`] and its reply written back.
    pub async fn serve(self, tx: mpsc::Sender<Call>) -> anyhow::Result<()> {
        self.serve_uid(tx, 0).await
    }

    /// [`Listener::serve`] for peers of uid `allowed` (tests).
    async fn serve_uid(self, tx: mpsc::Sender<Call>, allowed: u32) -> anyhow::Result<()> {
        let listener = UnixListener::from_std(self.listener.try_clone()?)?;
        info!(socket = %self.path.display(), "control API listening");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, tx.clone(), allowed));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn connection(stream: UnixStream, tx: mpsc::Sender<Call>, allowed: u32) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            warn!("control socket: cannot read the peer's credentials: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    if cred.uid() != allowed {
        warn!(uid = cred.uid(), pid = ?cred.pid(), "control socket: refused a non-root peer");
        let refusal = Response::Error(format!(
            "the sgd control API is for root only (your uid is {})",
            cred.uid()
        ));
        let _ = write_response(&mut write, refusal).await;
        return;
    }
    let mut reader = BufReader::new(read);
    loop {
        let line = match read_line_limited(&mut reader, MAX_REQUEST_BYTES).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = write_response(&mut write, Response::Error(e.to_string())).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match parse_request(&line) {
            Err(e) => Response::Error(e),
            Ok(request) => {
                debug!(pid = ?cred.pid(), verb = request.verb(), "control request");
                let (reply, answer) = oneshot::channel();
                if tx.send(Call { request, reply }).await.is_err() {
                    Response::Error("sgd is stopping".into())
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Response::Error("sgd dropped the request".into()))
                }
            }
        };
        if write_response(&mut write, response).await.is_err() {
            return;
        }
    }
}

/// One line, without its newline; `None` at the end of the stream.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request longer than {max} bytes"),
        ));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not UTF-8"))
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

async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    response: Response,
) -> io::Result<()> {
    let mut text = serde_json::to_string(&ResponseLine {
        v: VERSION,
        response,
    })
    .map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

// ---------------------------------------------------------------------------
// The client's side (sgctl, tests)

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No daemon listens there, or this user may not connect.
    #[error("cannot reach sgd at {path}: {source}")]
    Unreachable { path: PathBuf, source: io::Error },
    /// The connection broke, or the answer was not one.
    #[error("no answer from sgd at {path}: {message}")]
    NoAnswer { path: PathBuf, message: String },
}

/// Sends one request to the daemon at `socket` and waits up to `timeout`
/// for its answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, CallError> {
    let unreachable = |source| CallError::Unreachable {
        path: socket.to_owned(),
        source,
    };
    let no_answer = |message: String| CallError::NoAnswer {
        path: socket.to_owned(),
        message,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| no_answer(e.to_string()))?;
    let mut line = serde_json::to_string(&RequestLine {
        v: VERSION,
        request: request.clone(),
    })
    .map_err(|e| no_answer(e.to_string()))?;
    line.push('\n');
    // A refused peer may be answered and closed before it writes.
    let written = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = io::BufReader::new(&stream).read_line(&mut answer);
    match (read, written) {
        (Ok(n), _) if n > 0 => {}
        (Ok(_), Err(e)) | (Err(e), _) => return Err(no_answer(e.to_string())),
        (Ok(_), Ok(())) => return Err(no_answer("the connection was closed".into())),
    }
    let answer: ResponseLine = serde_json::from_str(&answer)
        .map_err(|e| no_answer(format!("not a response line ({e}): {}", answer.trim())))?;
    Ok(answer.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[prefix_list]]
id = "pl-office"
max_entries = 4
entries = ["203.0.113.0/24"]

[[port_list]]
id = "prl-web"
max_entries = 2
entries = ["80/80", "443/443"]

[[security_group]]
id = "sg-web"
name = "web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range_list_id = "prl-web"
  source_prefix_list_id = "pl-office"
  [[security_group.egress]]
  id = "no-smtp-relay"
  policy = "drop"
  priority = 2
  ip_protocol = "tcp"
  port_range = "587/587"
  dest_cidr_ip = "0.0.0.0/0"

[[security_group]]
id = "sg-db"
deletion_protection = true
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "5432/5432"
  source_group_id = "sg-web"

[[security_group]]
id = "sg-spare"

[[interface]]
name = "sgt-none0"
addresses = ["192.0.2.10"]
security_groups = ["sg-web"]
"#;

    /// A store on a temp dir, and an `apply` that records what it was
    /// given and fails when told to.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        applied: Vec<Config>,
        fail: bool,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("sg.toml");
            std::fs::write(
                &file,
                format!(
                    "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\n{BASE}",
                    dir.path().join("state"),
                    dir.path().join("run")
                ),
            )
            .unwrap();
            let store = Store::open(&dir.path().join("state"), &file).unwrap();
            Fixture {
                _dir: dir,
                store,
                applied: Vec::new(),
                fail: false,
            }
        }

        fn run(&mut self, request: Request) -> Response {
            let applied = &mut self.applied;
            let fail = self.fail;
            handle_desired(&mut self.store, request, &mut |c: &Config| {
                applied.push(c.clone());
                if fail {
                    anyhow::bail!("the kernel said no")
                }
                Ok(ApplyReport::default())
            })
        }

        fn ok(&mut self, request: Request) -> Reply {
            match self.run(request.clone()) {
                Response::Ok(r) => r,
                Response::Error(e) => panic!("{request:?} failed: {e}"),
            }
        }

        fn err(&mut self, request: Request) -> String {
            let before = self.store.document().clone();
            let state = std::fs::read(self.store.state_file()).ok();
            match self.run(request.clone()) {
                Response::Error(e) => {
                    assert_eq!(
                        self.store.document(),
                        &before,
                        "{request:?} changed the state"
                    );
                    assert_eq!(std::fs::read(self.store.state_file()).ok(), state);
                    e
                }
                Response::Ok(r) => panic!("{request:?} succeeded: {r:?}"),
            }
        }
    }

    fn rule(text: &str) -> store::Rule {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn an_authorized_rule_is_applied_persisted_and_survives_reopening() {
        let mut f = Fixture::new();
        let reply = f.ok(Request::AuthorizeRule {
            group: "sg-web".into(),
            direction: Direction::Ingress,
            rule: rule(
                "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"198.51.100.0/24\"",
            ),
        });
        let Reply::Done { id: Some(id), .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(id, "sg-web/ingress/3");
        assert_eq!(f.applied.len(), 1);
        assert_eq!(f.applied[0].groups[0].ingress[2].id, id);
        assert_eq!(f.store.source(), store::Source::State);
        let reopened = Store::open(
            f.store.state_file().parent().unwrap(),
            f.store.config_file(),
        )
        .unwrap();
        assert_eq!(reopened.config(), f.store.config());

        // Removing the first rule keeps the others' ids; a new rule does not
        // reuse one.
        f.ok(Request::RevokeRule {
            group: "sg-web".into(),
            direction: None,
            id: "sg-web/ingress/1".into(),
        });
        let Reply::Done { id: Some(next), .. } = f.ok(Request::AuthorizeRule {
            group: "sg-web".into(),
            direction: Direction::Ingress,
            rule: rule("policy = \"drop\"\nip_protocol = \"icmp\"\nport_range = \"-1/-1\"\nsource_cidr_ip = \"0.0.0.0/0\""),
        }) else {
            panic!()
        };
        assert_eq!(next, "sg-web/ingress/4");
        let ids: Vec<_> = f.store.config().groups[0]
            .ingress
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["sg-web/ingress/2", "sg-web/ingress/3", "sg-web/ingress/4"]
        );
    }

    #[test]
    fn a_bad_request_changes_nothing_and_says_what_is_wrong() {
        let mut f = Fixture::new();
        let e = f.err(Request::AuthorizeRule {
            group: "sg-web".into(),
            direction: Direction::Ingress,
            rule: rule("policy = \"accept\"\npriority = 101\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\""),
        });
        assert!(
            e.contains("group sg-web ingress rule sg-web/ingress/3: priority"),
            "{e}"
        );
        assert!(e.contains("1..=100"), "{e}");
        assert!(f.applied.is_empty());

        let e = f.err(Request::AuthorizeRule {
            group: "sg-nope".into(),
            direction: Direction::Egress,
            rule: store::Rule::default(),
        });
        assert_eq!(e, "no group sg-nope");

        // The kernel refuses: nothing persisted, the old state re-applied.
        f.fail = true;
        let e = f.err(Request::ModifyGroup {
            group: "sg-web".into(),
            name: Some("www".into()),
            description: None,
            inner_access_policy: None,
            deletion_protection: None,
            members: None,
        });
        assert!(e.contains("the kernel said no"), "{e}");
        assert_eq!(f.applied.len(), 2);
        assert_eq!(f.applied[1].groups[0].name, "web");
        assert!(!f.store.state_file().exists());
    }

    #[test]
    fn groups_in_use_cannot_be_deleted() {
        let mut f = Fixture::new();
        let e = f.err(Request::DeleteGroup {
            group: "sg-web".into(),
        });
        assert!(e.contains("bound to interface sgt-none0"), "{e}");
        assert!(e.contains("sg-db ingress rule sg-db/ingress/1"), "{e}");
        let e = f.err(Request::DeleteGroup {
            group: "sg-db".into(),
        });
        assert!(e.contains("deletion protection"), "{e}");
        f.ok(Request::DeleteGroup {
            group: "sg-spare".into(),
        });
        assert!(f.store.document().group("sg-spare").is_none());
    }

    #[test]
    fn modify_rule_replaces_the_remote_side_as_a_whole() {
        let mut f = Fixture::new();
        f.ok(Request::ModifyRule {
            group: "sg-web".into(),
            direction: Some(Direction::Ingress),
            id: "sg-web/ingress/2".into(),
            rule: rule(
                "source_cidr_ip = \"198.51.100.7\"\nport_range = \"8080/8080\"\npriority = 7",
            ),
        });
        let r = &f.store.document().security_group[0].ingress[1];
        assert_eq!(r.source_prefix_list_id, None);
        assert_eq!(r.port_range_list_id, None);
        assert_eq!(r.source_cidr_ip.as_deref(), Some("198.51.100.7"));
        assert_eq!(f.store.config().groups[0].ingress[1].priority, 7);
        let e = f.err(Request::ModifyRule {
            group: "sg-web".into(),
            direction: Some(Direction::Egress),
            id: "sg-web/ingress/2".into(),
            rule: store::Rule::default(),
        });
        assert!(e.contains("no egress rule"), "{e}");
    }

    #[test]
    fn interfaces_join_and_leave_and_lists_are_protected() {
        let mut f = Fixture::new();
        f.ok(Request::JoinInterface {
            interface: "sgt-none0".into(),
            group: "sg-spare".into(),
            mode: None,
            addresses: None,
        });
        assert_eq!(
            f.store.config().interfaces[0].security_groups,
            ["sg-web", "sg-spare"]
        );
        let e = f.err(Request::JoinInterface {
            interface: "sgt-none1".into(),
            group: "sg-web".into(),
            mode: Some("hypervisor".into()),
            addresses: None,
        });
        assert!(
            e.contains("interface sgt-none1: addresses: required"),
            "{e}"
        );
        f.ok(Request::LeaveInterface {
            interface: "sgt-none0".into(),
            group: "sg-web".into(),
        });
        f.ok(Request::LeaveInterface {
            interface: "sgt-none0".into(),
            group: "sg-spare".into(),
        });
        assert!(f.store.config().interfaces.is_empty());

        let e = f.err(Request::DeletePrefixList {
            id: "pl-office".into(),
        });
        assert!(e.contains("sg-web ingress rule sg-web/ingress/2"), "{e}");
        let e = f.err(Request::SetPortList {
            list: store::List {
                id: "prl-web".into(),
                max_entries: 1,
                entries: vec!["80/80".into(), "443/443".into()],
                ..Default::default()
            },
        });
        assert!(e.contains("port list prl-web: entries"), "{e}");
    }

    #[test]
    fn effective_rules_are_ordered_with_their_groups() {
        let f = Fixture::new();
        let e = effective_rules(f.store.document(), f.store.config(), "sgt-none0").unwrap();
        assert_eq!(e.instance_addresses, ["192.0.2.10"]);
        let ingress: Vec<_> = e
            .ingress
            .rules
            .iter()
            .map(|r| (r.group.as_deref(), r.id.as_str(), r.port_range.as_str()))
            .collect();
        assert_eq!(
            ingress,
            [
                (Some("sg-web"), "sg-web/ingress/1", "80/80"),
                (Some("sg-web"), "sg-web/ingress/2", "prl-web"),
                (None, "(intra-group)", "-1/-1"),
            ]
        );
        assert_eq!(e.ingress.rules[1].remote, "pl-office");
        assert_eq!(e.ingress.default_policy, "drop");
        assert_eq!(e.egress.rules[0].priority, Some(2));
        assert_eq!(e.egress.default_policy, "accept");
    }

    #[test]
    fn diagnose_names_the_deciding_rule_default_or_builtin() {
        let f = Fixture::new();
        let probe = |dir, proto: &str, src: &str, dst: &str, dport| Probe {
            interface: "sgt-none0".into(),
            direction: dir,
            protocol: proto.into(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 40000,
            dst_port: dport,
            icmp_type: None,
            icmp_code: None,
        };
        let d = |p: Probe| match diagnose(f.store.config(), &p, None).unwrap() {
            Reply::Diagnosis(d) => d,
            other => panic!("{other:?}"),
        };
        let http = d(probe(
            Direction::Ingress,
            "tcp",
            "198.51.100.1",
            "192.0.2.10",
            80,
        ));
        assert_eq!(
            (http.verdict.as_str(), http.rule.as_deref()),
            ("accept", Some("sg-web/ingress/1"))
        );
        let ssh = d(probe(
            Direction::Ingress,
            "tcp",
            "198.51.100.1",
            "192.0.2.10",
            22,
        ));
        assert_eq!(
            (ssh.verdict.as_str(), ssh.decided_by.as_str()),
            ("drop", "default")
        );
        let relay = d(probe(
            Direction::Egress,
            "tcp",
            "192.0.2.10",
            "198.51.100.1",
            587,
        ));
        assert_eq!(relay.rule.as_deref(), Some("no-smtp-relay"));
        let smtp = d(probe(
            Direction::Egress,
            "6",
            "192.0.2.10",
            "198.51.100.1",
            25,
        ));
        assert_eq!(
            (smtp.verdict.as_str(), smtp.decided_by.as_str()),
            ("drop", "builtin")
        );
        let ping = d(probe(
            Direction::Ingress,
            "icmp",
            "198.51.100.1",
            "192.0.2.10",
            0,
        ));
        assert_eq!(ping.verdict, "drop");
        assert!(
            diagnose(
                f.store.config(),
                &probe(Direction::Ingress, "tcp", "::1", "192.0.2.10", 1),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn export_and_reload() {
        let mut f = Fixture::new();
        f.ok(Request::CreateGroup {
            group: toml::from_str("id = \"sg-new\"\ndescription = \"d\"").unwrap(),
        });
        let Reply::Export { toml } = f.ok(Request::Export) else {
            panic!()
        };
        let parsed = crate::config::parse(Path::new("export"), &toml).unwrap();
        assert_eq!(&parsed, f.store.config());
        let Reply::Done { message, .. } = f.ok(Request::Reload) else {
            panic!()
        };
        assert!(message.contains("discarded"), "{message}");
        assert!(f.store.document().group("sg-new").is_none());
        assert!(!f.store.state_file().exists());
    }

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

    #[tokio::test]
    async fn the_socket_serves_its_uid_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/sgd.sock");
        let me = nix::unistd::geteuid().as_raw();
        for (allowed, served) in [(me, true), (me.wrapping_add(1), false)] {
            let listener = bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let (tx, mut rx) = mpsc::channel::<Call>(4);
            let server = tokio::spawn(listener.serve_uid(tx, allowed));
            tokio::spawn(async move {
                while let Some(call) = rx.recv().await {
                    let _ = call
                        .reply
                        .send(Response::Error(format!("echo {}", call.request.verb())));
                }
            });
            let p = path.clone();
            let answer = tokio::task::spawn_blocking(move || {
                call(&p, &Request::Counters, Duration::from_secs(5))
            })
            .await
            .unwrap()
            .unwrap();
            let Response::Error(text) = answer else {
                panic!()
            };
            if served {
                assert_eq!(text, "echo Counters");
            } else {
                assert!(text.contains("root only"), "{text}");
            }
            server.abort();
            let _ = server.await;
            // The listener is gone with its task, and so is the socket file.
            assert!(!path.exists());
        }
        // A stale socket (no one listening) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        let _listener = bind(&path).unwrap();
        // A live one is not taken over.
        let e = bind(&path).unwrap_err().to_string();
        assert!(e.contains("another sgd"), "{e}");
    }
}
