//! The command line: `sgctl`'s options and subcommands (clap), with the
//! examples each `--help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sg_daemon::{
    api::{DEFAULT_SOCKET, Direction},
    config::schema::{self, ProtocolValue},
};

/// Control sgd, the security-group daemon, through its socket (root only).
#[derive(Parser)]
#[command(
    name = "sgctl",
    version,
    after_help = "Examples:\n  sgctl group list\n  sgctl rule add sg-web ingress --policy accept --ip-protocol tcp --port-range 22/22 --source-cidr-ip 198.51.100.0/24\n  sgctl interface rules eth0 --output json\n\nExit codes: 0 done, 1 refused or failed (reason on stderr), 2 usage, 3 sgd not reachable."
)]
pub(crate) struct Cli {
    /// The daemon's control socket (`<runtime_dir>/sgd.sock`).
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Human-readable tables, or the answer's JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    /// How long to wait for the daemon's answer, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    pub(crate) timeout: u64,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Security groups: list, show, create, modify, clone, export, import, delete, health-check.
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
        after_help = "Example: sgctl prefix-list set pl-office --max-entries 10 --entry 203.0.113.0/24",
        mut_subcommand("list", |c| c.after_help("Example: sgctl prefix-list list")),
        mut_subcommand("set", |c| c.after_help(
            "Example: sgctl prefix-list set pl-office --max-entries 10 --entry 203.0.113.0/24 --entry 2001:db8:1::/48"
        )),
        mut_subcommand("delete", |c| c.after_help("Example: sgctl prefix-list delete pl-old"))
    )]
    PrefixList(ListCmd),
    /// Port lists (named sets of port ranges, `prl-…`).
    #[command(
        subcommand,
        name = "port-list",
        after_help = "Example: sgctl port-list set prl-web --max-entries 5 --entry 80/80 --entry 8000/8080",
        mut_subcommand("list", |c| c.after_help("Example: sgctl port-list list")),
        mut_subcommand("set", |c| c.after_help(
            "Example: sgctl port-list set prl-web --max-entries 5 --entry 80/80 --entry 8000/8080"
        )),
        mut_subcommand("delete", |c| c.after_help("Example: sgctl port-list delete prl-old"))
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
    /// Re-read the config file and make it the desired state. Refused when
    /// changes made through the API would be lost (export them into the
    /// file first to keep them), or a group under deletion protection would
    /// go.
    #[command(after_help = "Example: sgctl export > /etc/sg/sg.toml && sgctl reload")]
    Reload {
        /// Discard the changes made through the API since the file was
        /// loaded (groups under deletion protection are never discarded).
        #[arg(long)]
        discard_api_changes: bool,
    },
    /// Print the desired state as a config file (SPEC §7).
    #[command(after_help = "Example: sgctl export > sg-backup.toml")]
    Export,
    /// A group's snapshots (its rules as they were): list, diff, restore.
    #[command(subcommand, after_help = "Example: sgctl snapshot list sg-web")]
    Snapshot(super::snapshot::SnapshotCmd),
    /// Snapshot policies: which groups are snapshotted, kept how long.
    #[command(
        subcommand,
        name = "snapshot-policy",
        after_help = "Example: sgctl snapshot-policy create daily --retention-days 7 --group sg-web"
    )]
    SnapshotPolicy(super::snapshot::PolicyCmd),
    /// The fleet's shared store (etcd): status, first-time push.
    #[command(subcommand, after_help = "Example: sgctl datastore status")]
    Datastore(super::datastore::DatastoreCmd),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Json,
    Csv,
}

#[derive(Subcommand)]
pub(crate) enum GroupCmd {
    /// Every group, one per line.
    #[command(after_help = "Example: sgctl group list")]
    List,
    /// One group with its rules, bindings and the rules that reference it.
    #[command(after_help = "Example: sgctl group show sg-web")]
    Show {
        /// The group's id.
        group: String,
    },
    /// A new, empty group.
    #[command(
        after_help = "Example: sgctl group create sg-db --name db --description \"database servers\" --inner-access-policy drop"
    )]
    Create {
        /// Its id, e.g. sg-db.
        id: String,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// `basic` (default: members reach each other per
        /// --inner-access-policy) or `enterprise` (only by rules).
        #[arg(long = "type", value_parser = ["basic", "enterprise"])]
        kind: Option<String>,
        /// Basic groups: whether members reach each other without a rule
        /// (default accept).
        #[arg(long, value_parser = ["accept", "drop"])]
        inner_access_policy: Option<String>,
        /// Refuse to delete the group until this is turned off.
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
        /// The group's id.
        group: String,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Basic groups: whether members reach each other without a rule
        /// (default accept).
        #[arg(long, value_parser = ["accept", "drop"])]
        inner_access_policy: Option<String>,
        /// `true` refuses deletion of the group, `false` allows it.
        #[arg(long)]
        deletion_protection: Option<bool>,
        /// Replaces the member list (repeatable).
        #[arg(long = "member", conflicts_with = "clear_members")]
        members: Vec<String>,
        /// Removes every listed member.
        #[arg(long)]
        clear_members: bool,
    },
    /// A new group with SRC's type, inner access policy, members and rules
    /// (fresh rule ids; priorities over 100 become 100); not its bindings
    /// or deletion protection.
    #[command(
        after_help = "Example: sgctl group clone sg-web --id sg-web-staging --name web-staging"
    )]
    Clone {
        /// The group to copy.
        source: String,
        /// The new group's id.
        #[arg(long)]
        id: String,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// Free text (defaults to SRC's).
        #[arg(long)]
        description: Option<String>,
        /// Copy no rules.
        #[arg(long)]
        without_rules: bool,
    },
    /// Write a group's rules in ECS's format (`ecs_{region}_{group}.json`,
    /// or `ecs_sgRule_{group}_{region}_{date}.csv`) and print the path.
    #[command(after_help = "Example: sgctl group export sg-web --format csv --dir /tmp")]
    Export {
        /// The group's id.
        group: String,
        /// The shape of DescribeSecurityGroupAttribute, or the console's CSV.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Where to write the file (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Add the rules of an ECS file (JSON or CSV, as `group export` writes
    /// them or the ECS console exports them) to a group, in one change: at
    /// most 200 rules; priorities over 100 and duplicates of existing rules
    /// are skipped; a rule that is not valid refuses the whole file (exit
    /// code 1). Imported rules get fresh ids.
    #[command(after_help = "Example: sgctl group import sg-web ecs_local_sg-web.json --dry-run")]
    Import {
        /// The group's id.
        group: String,
        /// The file: .json or .csv (otherwise told by its content).
        file: PathBuf,
        /// Report what would be added, skipped and refused; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group (refused while bound, referenced or protected). Asks
    /// for confirmation on a terminal; elsewhere `--yes` is required.
    #[command(after_help = "Example: sgctl group delete sg-old --yes")]
    Delete {
        /// The group's id.
        group: String,
        /// Delete without asking.
        #[arg(long, short)]
        yes: bool,
    },
    /// Redundant rules (covered by a rule of the same policy at least as
    /// strong), shadowed ones (covered by a stronger rule of the other
    /// policy) and SSH/RDP/database ports open to the world. Exit code 0:
    /// no findings left; 4: findings left.
    #[command(after_help = "Example: sgctl group health-check sg-web --remove")]
    HealthCheck {
        /// The group's id.
        group: String,
        /// Delete the redundant rules, in one change.
        #[arg(long)]
        remove: bool,
    },
}

/// A rule's fields, named as in the config file.
#[derive(Args, Default)]
pub(crate) struct RuleFields {
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
    pub(crate) fn into_rule(self, id: Option<String>) -> schema::Rule {
        schema::Rule {
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
pub(crate) enum RuleCmd {
    /// Add a rule (its id is printed; one is generated without --id).
    #[command(
        after_help = "Example: sgctl rule add sg-web ingress --policy accept --priority 1 --ip-protocol tcp --port-range 22/22 --source-cidr-ip 198.51.100.0/24 --description ssh"
    )]
    Add {
        /// The group's id.
        group: String,
        /// Which list of the group: ingress (inbound) or egress.
        #[arg(value_parser = direction_arg())]
        direction: Direction,
        /// A stable id of your choice.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: RuleFields,
    },
    /// Remove a rule by id.
    #[command(after_help = "Example: sgctl rule remove sg-web sg-web/ingress/a9921e34")]
    Remove {
        /// The group's id.
        group: String,
        /// The rule's id (see `sgctl group show`).
        id: String,
        /// Only look in this direction.
        #[arg(long, value_parser = direction_arg())]
        direction: Option<Direction>,
    },
    /// Change the given fields of a rule (a remote-side field replaces the
    /// remote side; an empty value removes a field).
    #[command(
        after_help = "Example: sgctl rule modify sg-web sg-web/ingress/a9921e34 --source-cidr-ip 203.0.113.0/24 --priority 5"
    )]
    Modify {
        /// The group's id.
        group: String,
        /// The rule's id (see `sgctl group show`).
        id: String,
        /// Only look in this direction.
        #[arg(long, value_parser = direction_arg())]
        direction: Option<Direction>,
        #[command(flatten)]
        fields: RuleFields,
    },
}

#[derive(Subcommand)]
pub(crate) enum InterfaceCmd {
    /// Every bound interface.
    #[command(after_help = "Example: sgctl interface list")]
    List,
    /// Add a group to an interface (binding it if it was not).
    #[command(
        after_help = "Examples:\n  sgctl interface join eth0 sg-web\n  sgctl interface join tap-vm7 sg-web --mode hypervisor --address 198.51.100.7"
    )]
    Join {
        /// The interface's name, e.g. eth0 (it may appear later).
        interface: String,
        /// The group's id.
        group: String,
        /// `instance` (default: the host's own interface) or `hypervisor`
        /// (an instance's tap or veth; give its --address).
        #[arg(long, value_parser = ["instance", "hypervisor"])]
        mode: Option<String>,
        /// The instance's private IPs (repeatable; replaces the binding's).
        #[arg(long = "address")]
        addresses: Vec<String>,
    },
    /// Remove a group from an interface (with its last group the interface
    /// is no longer filtered).
    #[command(after_help = "Example: sgctl interface leave eth0 sg-old")]
    Leave {
        /// The interface's name.
        interface: String,
        /// The group's id.
        group: String,
    },
    /// The effective rules: merged, in evaluation order, each with its
    /// group.
    #[command(after_help = "Example: sgctl interface rules eth0")]
    Rules {
        /// The interface's name.
        interface: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ListCmd {
    /// Every list.
    List,
    /// Create or replace a list.
    Set {
        /// Its id: `pl-…` for a prefix list, `prl-…` for a port list.
        id: String,
        /// Counted against the rule quota of every interface using it.
        #[arg(long)]
        max_entries: i64,
        /// An entry (repeatable).
        #[arg(long = "entry")]
        entries: Vec<String>,
        /// A display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a list (refused while a rule references it).
    Delete {
        /// The list's id.
        id: String,
    },
}

/// `ingress` or `egress`, listed in `--help`.
fn direction_arg() -> impl clap::builder::TypedValueParser<Value = Direction> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Direction::BOTH.map(Direction::name))
        .map(|s| s.parse::<Direction>().expect("one of the possible values"))
}

#[derive(Args)]
pub(crate) struct DiagnoseArgs {
    /// The bound interface.
    pub(crate) interface: String,
    /// As the instance sees it: ingress is inbound.
    #[arg(long, value_parser = direction_arg())]
    pub(crate) direction: Direction,
    /// tcp, udp, icmp, icmpv6, gre or a number.
    #[arg(long)]
    pub(crate) protocol: String,
    /// The packet's source address.
    #[arg(long)]
    pub(crate) src: std::net::IpAddr,
    /// The packet's destination address.
    #[arg(long)]
    pub(crate) dst: std::net::IpAddr,
    /// The packet's source port (tcp and udp; default 0).
    #[arg(long, default_value_t = 0)]
    pub(crate) src_port: u16,
    /// The packet's destination port (required for tcp and udp).
    #[arg(long)]
    pub(crate) dst_port: Option<u16>,
    /// ICMP type (default: echo request).
    #[arg(long)]
    pub(crate) icmp_type: Option<u8>,
    /// ICMP code (default 0).
    #[arg(long)]
    pub(crate) icmp_code: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    /// Every option and argument of every subcommand, by path.
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for arg in cmd.get_arguments() {
            out.push((path.to_owned(), arg.clone()));
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory as _;
        let mut args = Vec::new();
        walk(&Cli::command(), "sgctl", &mut args);
        let missing: Vec<String> = args
            .iter()
            .filter(|(_, a)| a.get_help().is_none() && a.get_long_help().is_none())
            .map(|(path, a)| format!("{path} {}", a.get_id()))
            .collect();
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn list_examples_name_their_own_kind() {
        use clap::CommandFactory as _;
        let mut cli = Cli::command();
        cli.build();
        for (kind, other) in [("prefix-list", "port-list"), ("port-list", "prefix-list")] {
            let list = cli.find_subcommand(kind).unwrap();
            for sub in list.get_subcommands().filter(|s| s.get_name() != "help") {
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(
                    help.contains(&format!("sgctl {kind} {}", sub.get_name())),
                    "{kind} {}: {help}",
                    sub.get_name()
                );
                assert!(!help.contains(other), "{kind} {}: {help}", sub.get_name());
            }
        }
    }
}
