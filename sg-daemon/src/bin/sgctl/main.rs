//! `sgctl`: the command line of sgd's control API (SPEC §5, §6).
//!
//! Exit codes: 0 done, 1 the daemon refused or failed the request (the
//! reason on stderr), 2 usage, 3 the daemon cannot be reached, 4 a health
//! check found rules to look at (findings other than removed ones).
//!
//! `cli` holds the options and subcommands, `render` the tables (`operations` those of
//! import and the health check), `export`
//! the ECS files, `snapshot` the snapshot commands, `confirm` the
//! question before what cannot be undone; this file
//! turns a command into a request, sends it, prints the answer (or follows
//! the drops) and sets the exit code.

mod cli;
mod confirm;
mod datastore;
mod export;
mod operations;
mod render;
mod snapshot;

use std::{path::Path, process::ExitCode, time::Duration};

use clap::Parser as _;
use sg_daemon::{
    api::{self, CallError, Probe, Reply, Request, Response},
    config::schema,
};

use self::{
    cli::{Cli, Command, GroupCmd, InterfaceCmd, ListCmd, Output, RuleCmd},
    render::{View, drop_rows, render},
};

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_FINDINGS: u8 = 4;

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
                    group: schema::Group {
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
            GroupCmd::Delete { group, .. } => (Request::DeleteGroup { group }, View::Message),
            GroupCmd::HealthCheck { group, remove } => {
                (Request::HealthCheck { group, remove }, View::Plain)
            }
            GroupCmd::Clone {
                source,
                id,
                name,
                description,
                without_rules,
            } => (
                Request::CloneGroup {
                    source,
                    id,
                    name,
                    description,
                    without_rules,
                },
                View::Message,
            ),
            GroupCmd::Export { group, .. } => (Request::ExportGroup { group }, View::Plain),
            GroupCmd::Import {
                group,
                file,
                dry_run,
            } => (
                Request::ImportGroup {
                    group,
                    // By the extension; otherwise the daemon tells by the content.
                    format: match file.extension().and_then(|e| e.to_str()) {
                        Some(e) if e.eq_ignore_ascii_case("json") => "json".into(),
                        Some(e) if e.eq_ignore_ascii_case("csv") => "csv".into(),
                        _ => String::new(),
                    },
                    // Read by `main` (the caller's file, sent as text).
                    content: String::new(),
                    dry_run,
                },
                View::Plain,
            ),
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
                dst_port: d.dst_port.unwrap_or(0),
                icmp_type: d.icmp_type,
                icmp_code: d.icmp_code,
            }),
            View::Plain,
        ),
        Command::Sessions { flush: true, .. } => (Request::FlushSessions, View::Message),
        Command::Sessions { interface, .. } => (Request::Sessions { interface }, View::Plain),
        Command::Counters => (Request::Counters, View::Plain),
        Command::Drops { .. } => (Request::Drops { after: None }, View::Plain),
        Command::Reload {
            discard_api_changes,
        } => (
            Request::Reload {
                discard_api_changes,
            },
            View::Message,
        ),
        Command::Export => (Request::Export, View::Plain),
        Command::Snapshot(cmd) => snapshot::request(cmd),
        Command::SnapshotPolicy(cmd) => snapshot::policy_request(cmd),
        Command::Datastore(cmd) => datastore::request(cmd),
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
            let list = schema::List {
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

/// What clap cannot say alone: a usage error (exit code 2) naming the flag.
fn check(command: &Command) -> Result<(), clap::Error> {
    if let Command::Diagnose(d) = command
        && d.dst_port.is_none()
        && sg_common::proto::number(&d.protocol).is_some_and(sg_common::proto::has_ports)
    {
        use clap::CommandFactory as _;
        let mut cmd = Cli::command();
        cmd.build();
        let diagnose = cmd.find_subcommand_mut("diagnose").expect("a subcommand");
        return Err(diagnose.error(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!(
                "--dst-port is required for {} packets (rules match it)",
                d.protocol
            ),
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = check(&cli.command) {
        e.exit();
    }
    let confirmed = match &cli.command {
        Command::Group(GroupCmd::Delete { group, yes: false }) => confirm::ask(
            &format!("Delete security group {group}?"),
            &format!("deleting security group {group}"),
            "not deleted",
        ),
        Command::Snapshot(snapshot::SnapshotCmd::Restore {
            group,
            snapshot,
            yes: false,
        }) => snapshot::confirm_restore(group, snapshot),
        _ => None,
    };
    if let Some(code) = confirmed {
        return code;
    }
    let follow = matches!(cli.command, Command::Drops { follow: true });
    let export = export::target(&cli.command);
    let import_file = match &cli.command {
        Command::Group(GroupCmd::Import { file, .. })
        | Command::Datastore(datastore::DatastoreCmd::Push { file }) => Some(file.clone()),
        _ => None,
    };
    let (mut req, view) = request(cli.command);
    let content = match &mut req {
        Request::ImportGroup { content, .. } | Request::DatastorePush { content } => Some(content),
        _ => None,
    };
    if let (Some(file), Some(content)) = (import_file, content) {
        match std::fs::read_to_string(&file) {
            Ok(text) if text.len() > api::MAX_REQUEST_BYTES / 2 => {
                eprintln!(
                    "sgctl: {} is too large to send to sgd ({} bytes; at most {})",
                    file.display(),
                    text.len(),
                    api::MAX_REQUEST_BYTES / 2
                );
                return ExitCode::from(EXIT_REFUSED);
            }
            Ok(text) => *content = text,
            Err(e) => {
                eprintln!("sgctl: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_REFUSED);
            }
        }
    }
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
    if let (Some((format, dir)), Reply::EcsGroup(group)) = (export, &reply) {
        return export::write(group, format, &dir, cli.output);
    }
    let status = match &reply {
        Reply::Health(r) if r.findings.iter().any(|f| !r.removed.contains(&f.rule)) => {
            ExitCode::from(EXIT_FINDINGS)
        }
        Reply::Import(r) if !r.refused.is_empty() => {
            eprintln!(
                "sgctl: import refused: {} rule(s) of the file are not valid; nothing was imported",
                r.refused.len()
            );
            ExitCode::from(EXIT_REFUSED)
        }
        _ => ExitCode::SUCCESS,
    };
    let mut last = match &reply {
        Reply::Drops(drops) => drops.last().map(|d| d.seq),
        _ => None,
    };
    if cli.output == Output::Json && follow {
        // One JSON object a line, flushed, for as long as it runs.
        if let Reply::Drops(drops) = &reply {
            print_drops(drops, cli.output);
        }
        return follow_drops(&cli.socket, cli.timeout, &mut last, cli.output);
    }
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
        return status;
    }
    print!("{}", render(reply, view));
    if follow {
        return follow_drops(&cli.socket, cli.timeout, &mut last, cli.output);
    }
    status
}

/// Followed drops: table rows, or one JSON object a line; flushed.
fn print_drops(drops: &[sg_daemon::drops::Drop], output: Output) {
    use std::io::Write as _;
    match output {
        Output::Table => print!("{}", drop_rows(drops, false)),
        Output::Json => {
            for d in drops {
                println!("{}", render::drop_json(d));
            }
        }
    }
    let _ = std::io::stdout().flush();
}

/// `sgctl drops --follow`: asks for the drops after the last one seen,
/// twice a second, and prints them as they come.
fn follow_drops(socket: &Path, timeout: u64, last: &mut Option<u64>, output: Output) -> ExitCode {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let req = Request::Drops { after: *last };
        match api::call(socket, &req, Duration::from_secs(timeout)) {
            Ok(Response::Ok(Reply::Drops(drops))) if !drops.is_empty() => {
                *last = drops.last().map(|d| d.seq);
                print_drops(&drops, output);
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

#[cfg(test)]
mod tests {
    use sg_daemon::{api::Direction, config::schema::ProtocolValue};

    use super::*;

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
    fn health_check_takes_a_group_and_remove() {
        let cli =
            Cli::try_parse_from(["sgctl", "group", "health-check", "sg-web", "--remove"]).unwrap();
        let (req, _) = request(cli.command);
        assert_eq!(
            req,
            Request::HealthCheck {
                group: "sg-web".into(),
                remove: true
            }
        );
        assert!(Cli::try_parse_from(["sgctl", "group", "health-check"]).is_err());
    }

    #[test]
    fn clone_and_export_parse_their_flags() {
        let cli = Cli::try_parse_from([
            "sgctl",
            "group",
            "clone",
            "sg-web",
            "--id",
            "sg-new",
            "--name",
            "n",
            "--without-rules",
        ])
        .unwrap();
        let (
            Request::CloneGroup {
                source,
                id,
                name,
                description,
                without_rules,
            },
            _,
        ) = request(cli.command)
        else {
            panic!()
        };
        assert_eq!((source.as_str(), id.as_str()), ("sg-web", "sg-new"));
        assert_eq!(
            (name.as_deref(), description, without_rules),
            (Some("n"), None, true)
        );
        assert!(Cli::try_parse_from(["sgctl", "group", "clone", "sg-web"]).is_err());

        let cli = Cli::try_parse_from([
            "sgctl", "group", "export", "sg-web", "--format", "csv", "--dir", "/tmp",
        ])
        .unwrap();
        let (format, dir) = export::target(&cli.command).unwrap();
        assert!(format == cli::ExportFormat::Csv && dir == Path::new("/tmp"));
        assert!(
            matches!(request(cli.command).0, Request::ExportGroup { group } if group == "sg-web")
        );
        assert!(
            Cli::try_parse_from(["sgctl", "group", "export", "sg-web", "--format", "xml"]).is_err()
        );

        // import: the format by the extension (any case), else left to the
        // daemon (by the content); the content is read by `main`.
        for (file, want) in [("a.JSON", "json"), ("b.csv", "csv"), ("rules", "")] {
            let cli =
                Cli::try_parse_from(["sgctl", "group", "import", "sg-web", file, "--dry-run"])
                    .unwrap();
            assert!(
                matches!(request(cli.command).0, Request::ImportGroup { group, format, dry_run: true, .. }
                    if group == "sg-web" && format == want),
                "{file}"
            );
        }
        assert!(Cli::try_parse_from(["sgctl", "group", "import", "sg-web"]).is_err());
    }

    #[test]
    fn diagnose_needs_a_destination_port_for_tcp_and_udp() {
        let base = ["sgctl", "diagnose", "eth0", "--direction", "ingress"];
        let addrs = ["--src", "198.51.100.7", "--dst", "192.0.2.10"];
        for (protocol, port, ok) in [
            ("tcp", None, false),
            ("UDP", None, false),
            ("6", None, false),
            ("tcp", Some("22"), true),
            ("icmp", None, true),
            ("gre", None, true),
        ] {
            let mut args: Vec<&str> = base.to_vec();
            args.extend(["--protocol", protocol]);
            args.extend(addrs);
            if let Some(p) = port {
                args.extend(["--dst-port", p]);
            }
            let cli = Cli::try_parse_from(&args).unwrap();
            match check(&cli.command) {
                Ok(()) => assert!(ok, "{protocol} {port:?} passed"),
                Err(e) => {
                    assert!(!ok, "{protocol} {port:?}: {e}");
                    assert_eq!(e.exit_code(), 2);
                    assert!(e.to_string().contains("--dst-port"), "{e}");
                }
            }
        }
    }
}
