//! `sgctl`: the command line of sgd's control API (SPEC §5, §6).
//!
//! Exit codes: 0 done, 1 the daemon refused or failed the request (the
//! reason on stderr), 2 usage, 3 the daemon cannot be reached.
//!
//! `cli` holds the options and subcommands, `render` the tables; this file
//! turns a command into a request, sends it, prints the answer (or follows
//! the drops) and sets the exit code.

mod cli;
mod render;

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
}
