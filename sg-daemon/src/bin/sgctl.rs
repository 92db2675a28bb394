//! `sgctl`: the command line of sgd's control API (SPEC §5, §6).
//!
//! Exit codes: 0 done, 1 the daemon refused or failed the request (the
//! reason on stderr), 2 usage, 3 the daemon cannot be reached.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sg_daemon::{
    api::{
        self, CallError, Counters, DEFAULT_SOCKET, Diagnosis, Direction, Effective, EffectiveRule,
        GroupInfo, InterfaceInfo, Probe, Reply, Request, Response, SessionInfo,
    },
    store::{self, ProtocolValue},
};

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;

/// Control sgd, the security-group daemon, through its socket (root only).
#[derive(Parser)]
#[command(
    name = "sgctl",
    version,
    after_help = "Examples:\n  sgctl group list\n  sgctl rule add sg-web ingress --policy accept --ip-protocol tcp --port-range 22/22 --source-cidr-ip 198.51.100.0/24\n  sgctl interface rules eth0 --output json\n\nExit codes: 0 done, 1 refused or failed (reason on stderr), 2 usage, 3 sgd not reachable."
)]
struct Cli {
    /// The daemon's control socket (`<runtime_dir>/sgd.sock`).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Human-readable tables, or the answer's JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// How long to wait for the daemon's answer, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Security groups: list, show, create, modify, delete.
    #[command(subcommand, after_help = "Example: sgctl group show sg-web")]
    Group(GroupCmd),
    /// Rules of a group: add, remove, modify (by rule id).
    #[command(
        subcommand,
        after_help = "Example: sgctl rule add sg-web ingress --policy accept --ip-protocol tcp --port-range 443/443 --source-cidr-ip 0.0.0.0/0"
    )]
    Rule(RuleCmd),
    /// Interface bindings: list, join, leave, and the effective rules.
    #[command(subcommand, after_help = "Example: sgctl interface rules eth0")]
    Interface(InterfaceCmd),
    /// Prefix lists (named sets of CIDRs, `pl-…`).
    #[command(
        subcommand,
        name = "prefix-list",
        after_help = "Example: sgctl prefix-list set pl-office --max-entries 10 --entry 203.0.113.0/24"
    )]
    PrefixList(ListCmd),
    /// Port lists (named sets of port ranges, `prl-…`).
    #[command(
        subcommand,
        name = "port-list",
        after_help = "Example: sgctl port-list set prl-web --max-entries 5 --entry 80/80 --entry 8000/8080"
    )]
    PortList(ListCmd),
    /// Whether a described packet passes an interface, and what decides it.
    #[command(
        after_help = "Example: sgctl diagnose eth0 --direction ingress --protocol tcp --src 198.51.100.7 --dst 192.0.2.10 --src-port 40000 --dst-port 22"
    )]
    Diagnose(DiagnoseArgs),
    /// Tracked sessions; `--flush` forgets all of them.
    #[command(
        after_help = "Examples:\n  sgctl sessions --interface eth0\n  sgctl sessions --flush"
    )]
    Sessions {
        /// Only this interface's sessions.
        #[arg(long, conflicts_with = "flush")]
        interface: Option<String>,
        /// Forget every tracked session, of every interface (their next
        /// packets are decided by the rules again).
        #[arg(long)]
        flush: bool,
    },
    /// Packets decided so far: per reason, per interface and verdict, per
    /// rule.
    #[command(after_help = "Example: sgctl counters --output json")]
    Counters,
    /// Recent dropped packets (the last 1024): when, where, the 5-tuple and
    /// what decided (the rule, or a default or built-in).
    #[command(after_help = "Example: sgctl drops --follow")]
    Drops {
        /// Keep printing new drops as they happen (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// Re-read the config file and make it the desired state; changes made
    /// through the API since it was loaded are discarded (export them into
    /// the file first to keep them).
    #[command(after_help = "Example: sgctl export > /etc/sg/sg.toml && sgctl reload")]
    Reload,
    /// Print the desired state as a config file (SPEC §7).
    #[command(after_help = "Example: sgctl export > sg-backup.toml")]
    Export,
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Every group, one per line.
    #[command(after_help = "Example: sgctl group list")]
    List,
    /// One group with its rules, bindings and the rules that reference it.
    #[command(after_help = "Example: sgctl group show sg-web")]
    Show { group: String },
    /// A new, empty group.
    #[command(
        after_help = "Example: sgctl group create sg-db --name db --description \"database servers\" --inner-access-policy drop"
    )]
    Create {
        /// Its id, e.g. sg-db.
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "type", value_parser = ["basic", "enterprise"])]
        kind: Option<String>,
        #[arg(long, value_parser = ["accept", "drop"])]
        inner_access_policy: Option<String>,
        #[arg(long)]
        deletion_protection: bool,
        /// A member on another host (repeatable).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Change a group's name, description, intra-group policy, deletion
    /// protection or members (an empty name or description removes it).
    #[command(
        after_help = "Example: sgctl group modify sg-web --inner-access-policy drop --deletion-protection true"
    )]
    Modify {
        group: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_parser = ["accept", "drop"])]
        inner_access_policy: Option<String>,
        #[arg(long)]
        deletion_protection: Option<bool>,
        /// Replaces the member list (repeatable).
        #[arg(long = "member", conflicts_with = "clear_members")]
        members: Vec<String>,
        /// Removes every listed member.
        #[arg(long)]
        clear_members: bool,
    },
    /// Delete a group (refused while bound, referenced or protected).
    #[command(after_help = "Example: sgctl group delete sg-old")]
    Delete { group: String },
}

/// A rule's fields, named as in the config file.
#[derive(Args, Default)]
struct RuleFields {
    /// `accept` or `drop`.
    #[arg(long)]
    policy: Option<String>,
    /// 1..=100, 1 is the strongest (default 1).
    #[arg(long)]
    priority: Option<i64>,
    /// tcp, udp, icmp, icmpv6, gre, all, or a number 0..=255.
    #[arg(long)]
    ip_protocol: Option<String>,
    /// "start/end" for tcp and udp, "-1/-1" for other protocols.
    #[arg(long, allow_hyphen_values = true)]
    port_range: Option<String>,
    /// A port list instead of --port-range (tcp and udp).
    #[arg(long)]
    port_range_list_id: Option<String>,
    /// 5-tuple rules: the packet's source ports, "start/end".
    #[arg(long)]
    source_port_range: Option<String>,
    /// Ingress: the remote address or CIDR; egress: the local one (5-tuple).
    #[arg(long)]
    source_cidr_ip: Option<String>,
    /// Ingress: the members of a group.
    #[arg(long)]
    source_group_id: Option<String>,
    /// Ingress: the entries of a prefix list.
    #[arg(long)]
    source_prefix_list_id: Option<String>,
    /// Egress: the remote address or CIDR; ingress: the local one (5-tuple).
    #[arg(long)]
    dest_cidr_ip: Option<String>,
    /// Egress: the members of a group.
    #[arg(long)]
    dest_group_id: Option<String>,
    /// Egress: the entries of a prefix list.
    #[arg(long)]
    dest_prefix_list_id: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
}

impl RuleFields {
    fn into_rule(self, id: Option<String>) -> store::Rule {
        store::Rule {
            id,
            policy: self.policy,
            priority: self.priority,
            ip_protocol: self.ip_protocol.map(|p| match p.parse::<i64>() {
                Ok(n) => ProtocolValue::Number(n),
                Err(_) => ProtocolValue::Name(p),
            }),
            port_range: self.port_range,
            port_range_list_id: self.port_range_list_id,
            source_port_range: self.source_port_range,
            source_cidr_ip: self.source_cidr_ip,
            source_group_id: self.source_group_id,
            source_prefix_list_id: self.source_prefix_list_id,
            dest_cidr_ip: self.dest_cidr_ip,
            dest_group_id: self.dest_group_id,
            dest_prefix_list_id: self.dest_prefix_list_id,
            description: self.description,
        }
    }
}

#[derive(Subcommand)]
enum RuleCmd {
    /// Add a rule (its id is printed; one is generated without --id).
    #[command(
        after_help = "Example: sgctl rule add sg-web ingress --policy accept --priority 1 --ip-protocol tcp --port-range 22/22 --source-cidr-ip 198.51.100.0/24 --description ssh"
    )]
    Add {
        group: String,
        #[arg(value_parser = direction_arg())]
        direction: Direction,
        /// A stable id of your choice.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: RuleFields,
    },
    /// Remove a rule by id.
    #[command(after_help = "Example: sgctl rule remove sg-web sg-web/ingress/3")]
    Remove {
        group: String,
        id: String,
        /// Only look in this direction.
        #[arg(long, value_parser = direction_arg())]
        direction: Option<Direction>,
    },
    /// Change the given fields of a rule (a remote-side field replaces the
    /// remote side; an empty value removes a field).
    #[command(
        after_help = "Example: sgctl rule modify sg-web sg-web/ingress/1 --source-cidr-ip 203.0.113.0/24 --priority 5"
    )]
    Modify {
        group: String,
        id: String,
        #[arg(long, value_parser = direction_arg())]
        direction: Option<Direction>,
        #[command(flatten)]
        fields: RuleFields,
    },
}

#[derive(Subcommand)]
enum InterfaceCmd {
    /// Every bound interface.
    #[command(after_help = "Example: sgctl interface list")]
    List,
    /// Add a group to an interface (binding it if it was not).
    #[command(
        after_help = "Examples:\n  sgctl interface join eth0 sg-web\n  sgctl interface join tap-vm7 sg-web --mode hypervisor --address 198.51.100.7"
    )]
    Join {
        interface: String,
        group: String,
        #[arg(long, value_parser = ["instance", "hypervisor"])]
        mode: Option<String>,
        /// The instance's private IPs (repeatable; replaces the binding's).
        #[arg(long = "address")]
        addresses: Vec<String>,
    },
    /// Remove a group from an interface (with its last group the interface
    /// is no longer filtered).
    #[command(after_help = "Example: sgctl interface leave eth0 sg-old")]
    Leave { interface: String, group: String },
    /// The effective rules: merged, in evaluation order, each with its
    /// group.
    #[command(after_help = "Example: sgctl interface rules eth0")]
    Rules { interface: String },
}

#[derive(Subcommand)]
enum ListCmd {
    /// Every list.
    #[command(after_help = "Example: sgctl prefix-list list")]
    List,
    /// Create or replace a list.
    #[command(
        after_help = "Example: sgctl prefix-list set pl-office --max-entries 10 --entry 203.0.113.0/24 --entry 2001:db8:1::/48"
    )]
    Set {
        id: String,
        /// Counted against the rule quota of every interface using it.
        #[arg(long)]
        max_entries: i64,
        /// An entry (repeatable).
        #[arg(long = "entry")]
        entries: Vec<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a list (refused while a rule references it).
    #[command(after_help = "Example: sgctl prefix-list delete pl-old")]
    Delete { id: String },
}

/// `ingress` or `egress`, listed in `--help`.
fn direction_arg() -> impl clap::builder::TypedValueParser<Value = Direction> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Direction::BOTH.map(Direction::name))
        .map(|s| s.parse::<Direction>().expect("one of the possible values"))
}

#[derive(Args)]
struct DiagnoseArgs {
    /// The bound interface.
    interface: String,
    /// As the instance sees it: ingress is inbound.
    #[arg(long, value_parser = direction_arg())]
    direction: Direction,
    /// tcp, udp, icmp, icmpv6, gre or a number.
    #[arg(long)]
    protocol: String,
    #[arg(long)]
    src: std::net::IpAddr,
    #[arg(long)]
    dst: std::net::IpAddr,
    #[arg(long, default_value_t = 0)]
    src_port: u16,
    #[arg(long, default_value_t = 0)]
    dst_port: u16,
    /// ICMP type (default: echo request).
    #[arg(long)]
    icmp_type: Option<u8>,
    #[arg(long)]
    icmp_code: Option<u8>,
}

/// What to ask, and how to show the answer.
enum View {
    Message,
    GroupList,
    GroupDetail,
    Plain,
}

fn request(command: Command) -> (Request, View) {
    match command {
        Command::Group(g) => match g {
            GroupCmd::List => (Request::DescribeGroups { group: None }, View::GroupList),
            GroupCmd::Show { group } => (
                Request::DescribeGroups { group: Some(group) },
                View::GroupDetail,
            ),
            GroupCmd::Create {
                id,
                name,
                description,
                kind,
                inner_access_policy,
                deletion_protection,
                members,
            } => (
                Request::CreateGroup {
                    group: store::Group {
                        id,
                        name,
                        description,
                        kind,
                        inner_access_policy,
                        members,
                        deletion_protection,
                        ..Default::default()
                    },
                },
                View::Message,
            ),
            GroupCmd::Modify {
                group,
                name,
                description,
                inner_access_policy,
                deletion_protection,
                members,
                clear_members,
            } => (
                Request::ModifyGroup {
                    group,
                    name,
                    description,
                    inner_access_policy,
                    deletion_protection,
                    members: if clear_members {
                        Some(Vec::new())
                    } else if members.is_empty() {
                        None
                    } else {
                        Some(members)
                    },
                },
                View::Message,
            ),
            GroupCmd::Delete { group } => (Request::DeleteGroup { group }, View::Message),
        },
        Command::Rule(r) => match r {
            RuleCmd::Add {
                group,
                direction,
                id,
                fields,
            } => (
                Request::AuthorizeRule {
                    group,
                    direction,
                    rule: fields.into_rule(id),
                },
                View::Message,
            ),
            RuleCmd::Remove {
                group,
                id,
                direction,
            } => (
                Request::RevokeRule {
                    group,
                    direction,
                    id,
                },
                View::Message,
            ),
            RuleCmd::Modify {
                group,
                id,
                direction,
                fields,
            } => (
                Request::ModifyRule {
                    group,
                    direction,
                    id,
                    rule: fields.into_rule(None),
                },
                View::Message,
            ),
        },
        Command::Interface(i) => match i {
            InterfaceCmd::List => (Request::ListInterfaces, View::Plain),
            InterfaceCmd::Join {
                interface,
                group,
                mode,
                addresses,
            } => (
                Request::JoinInterface {
                    interface,
                    group,
                    mode,
                    addresses: (!addresses.is_empty()).then_some(addresses),
                },
                View::Message,
            ),
            InterfaceCmd::Leave { interface, group } => {
                (Request::LeaveInterface { interface, group }, View::Message)
            }
            InterfaceCmd::Rules { interface } => {
                (Request::EffectiveRules { interface }, View::Plain)
            }
        },
        Command::PrefixList(l) => list_request(l, true),
        Command::PortList(l) => list_request(l, false),
        Command::Diagnose(d) => (
            Request::Diagnose(Probe {
                interface: d.interface,
                direction: d.direction,
                protocol: d.protocol,
                src: d.src,
                dst: d.dst,
                src_port: d.src_port,
                dst_port: d.dst_port,
                icmp_type: d.icmp_type,
                icmp_code: d.icmp_code,
            }),
            View::Plain,
        ),
        Command::Sessions { flush: true, .. } => (Request::FlushSessions, View::Message),
        Command::Sessions { interface, .. } => (Request::Sessions { interface }, View::Plain),
        Command::Counters => (Request::Counters, View::Plain),
        Command::Drops { .. } => (Request::Drops { after: None }, View::Plain),
        Command::Reload => (Request::Reload, View::Message),
        Command::Export => (Request::Export, View::Plain),
    }
}

fn list_request(cmd: ListCmd, prefix: bool) -> (Request, View) {
    match cmd {
        ListCmd::List if prefix => (Request::ListPrefixLists, View::Plain),
        ListCmd::List => (Request::ListPortLists, View::Plain),
        ListCmd::Set {
            id,
            max_entries,
            entries,
            name,
            description,
        } => {
            let list = store::List {
                id,
                name,
                description,
                max_entries,
                entries,
            };
            let r = if prefix {
                Request::SetPrefixList { list }
            } else {
                Request::SetPortList { list }
            };
            (r, View::Message)
        }
        ListCmd::Delete { id } if prefix => (Request::DeletePrefixList { id }, View::Message),
        ListCmd::Delete { id } => (Request::DeletePortList { id }, View::Message),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let follow = matches!(cli.command, Command::Drops { follow: true });
    let (req, view) = request(cli.command);
    let response = match api::call(&cli.socket, &req, Duration::from_secs(cli.timeout)) {
        Ok(r) => r,
        Err(e) => {
            let hint = match &e {
                CallError::Unreachable { .. } => {
                    " (is sgd running with this runtime_dir, and are you root? see --socket)"
                }
                CallError::NoAnswer { .. } => "",
            };
            eprintln!("sgctl: {e}{hint}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let reply = match response {
        Response::Ok(reply) => reply,
        Response::Error(message) => {
            eprintln!("sgctl: {message}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    if cli.output == Output::Json {
        let value = serde_json::to_value(&reply).expect("replies serialise");
        let data = value
            .get("data")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&data).expect("JSON values serialise")
        );
        return ExitCode::SUCCESS;
    }
    let mut last = match &reply {
        Reply::Drops(drops) => drops.last().map(|d| d.seq),
        _ => None,
    };
    print!("{}", render(reply, view));
    if follow {
        return follow_drops(&cli.socket, cli.timeout, &mut last);
    }
    ExitCode::SUCCESS
}

/// `sgctl drops --follow`: asks for the drops after the last one seen,
/// twice a second, and prints them as they come.
fn follow_drops(socket: &Path, timeout: u64, last: &mut Option<u64>) -> ExitCode {
    use std::io::Write as _;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let req = Request::Drops { after: *last };
        match api::call(socket, &req, Duration::from_secs(timeout)) {
            Ok(Response::Ok(Reply::Drops(drops))) if !drops.is_empty() => {
                *last = drops.last().map(|d| d.seq);
                print!("{}", drop_rows(&drops, false));
                let _ = std::io::stdout().flush();
            }
            Ok(Response::Ok(_)) => {}
            Ok(Response::Error(message)) => {
                eprintln!("sgctl: {message}");
                return ExitCode::from(EXIT_REFUSED);
            }
            Err(e) => {
                eprintln!("sgctl: {e}");
                return ExitCode::from(EXIT_UNREACHABLE);
            }
        }
    }
}

fn drop_rows(drops: &[sg_daemon::drops::Drop], headers: bool) -> String {
    let rows: Vec<Vec<String>> = drops
        .iter()
        .map(|d| {
            vec![
                format!("{:.3}", d.boot_secs),
                d.interface.clone(),
                d.direction.clone(),
                d.protocol.to_string(),
                format!("{}:{}", d.src, d.src_port),
                format!("{}:{}", d.dst, d.dst_port),
                d.reason.clone(),
                or_dash(d.rule.as_deref()),
            ]
        })
        .collect();
    let text = table(
        &[
            "BOOT-TIME",
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

// ---------------------------------------------------------------------------
// Tables

/// Left-aligned columns, two spaces apart; no trailing spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

fn render(reply: Reply, view: View) -> String {
    match reply {
        Reply::Done { message, .. } => format!("{message}\n"),
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
        let rows: Vec<Vec<String>> = rules
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
            .collect();
        out.push_str(&table(
            &[
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
            ],
            &rows,
        ));
    }
    out
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
                    if i.present { "yes" } else { "no (waiting)" }.into(),
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
            "IDLE",
            "EXPIRES IN",
        ],
        &list
            .iter()
            .map(|s| {
                let at = |a: &str, p: u16| {
                    if a.contains(':') {
                        format!("[{a}]:{p}")
                    } else {
                        format!("{a}:{p}")
                    }
                };
                vec![
                    s.interface.clone(),
                    s.protocol.clone(),
                    at(&s.local, s.local_port),
                    at(&s.remote, s.remote_port),
                    s.opened.clone(),
                    format!("{}s", s.idle_secs),
                    if s.expires_in_secs == 0 {
                        "expired".into()
                    } else {
                        format!("{}s", s.expires_in_secs)
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
    fn the_cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn rule_flags_use_the_files_field_names() {
        let cli = Cli::try_parse_from([
            "sgctl",
            "rule",
            "add",
            "sg-web",
            "egress",
            "--policy",
            "drop",
            "--ip-protocol",
            "17",
            "--port-range",
            "-1/-1",
            "--dest-prefix-list-id",
            "pl-x",
        ])
        .unwrap();
        let (
            Request::AuthorizeRule {
                rule, direction, ..
            },
            _,
        ) = request(cli.command)
        else {
            panic!()
        };
        assert_eq!(direction, Direction::Egress);
        assert_eq!(rule.ip_protocol, Some(ProtocolValue::Number(17)));
        assert_eq!(rule.port_range.as_deref(), Some("-1/-1"));
        assert_eq!(rule.dest_prefix_list_id.as_deref(), Some("pl-x"));
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
