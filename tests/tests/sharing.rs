//! Applying only what changed (issue #9, item 2): interfaces bound to the
//! same groups share one kernel table per direction; a change switches
//! only the interfaces whose tables differ (the others keep their table
//! ids and their epoch, so their sessions are not re-checked); the rule
//! counters of a shared table stay per interface; a shared table is freed
//! once its last interface leaves it.
//!
//! An in-process [`Daemon`] enforces veth interfaces in a namespace of
//! its own; packets go through the loaded program with
//! `BPF_PROG_TEST_RUN`, whose skb carries the interface's ifindex (given in
//! the context), and each verdict is compared with the reference decision.

use std::{net::IpAddr, path::Path, time::Duration};

use sg_common::Reason;
use sg_daemon::{
    compile::{CompiledTable, Origin, build_table, compile},
    daemon::Daemon,
    dataplane::Hook,
    model::{Addresses, Config, Direction},
    reference::{self, DecidedBy, Interface, Packet},
};
mod common;

use sg_tests::{DaemonDirs, Group, Netns, accept_in, drop_in, frames, interface};

const REMOTE: &str = "192.0.2.1";
const LOCAL: &str = "192.0.2.2";

/// Web from anywhere, SSH refused from one network: bound everywhere.
fn web() -> Group {
    Group::new("sg-web").rules([
        accept_in("tcp", "80/80", "0.0.0.0/0").id("http"),
        drop_in("tcp", "22/22", "192.0.2.0/24").id("no-ssh"),
    ])
}

/// A group bound to `d0` only, opening `port`.
fn extra(port: u16) -> Group {
    Group::new("sg-extra").rules([accept_in("tcp", &format!("{port}/{port}"), "0.0.0.0/0").id("x")])
}

/// `d0` on web and extra, each of `shared` on web alone.
fn config_text(dirs: &DaemonDirs, port: u16, shared: &[&str]) -> String {
    let mut toml = format!("{}{}", web(), extra(port));
    toml += &interface("d0", &["sg-web", "sg-extra"]).to_string();
    for name in shared {
        toml += &interface(name, &["sg-web"]).to_string();
    }
    dirs.config(&toml)
}

fn parse(text: &str) -> Config {
    sg_daemon::config::parse(Path::new("sharing.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

/// A namespace with interfaces `d0`..`d{n-1}` (veths whose peers
/// `p0`.. stay in the namespace too), up.
fn interfaces(n: usize) -> Netns {
    let ns = Netns::new("sharing").unwrap();
    for i in 0..n {
        let (name, peer) = (format!("d{i}"), format!("p{i}"));
        ns.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .unwrap();
        for link in [&name, &peer] {
            ns.ip(&["link", "set", link, "up"]).unwrap();
        }
    }
    ns
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What decided one packet, as the daemon names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    accept: bool,
    reason: Reason,
    rule: Option<Origin>,
}

/// An inbound TCP SYN from `REMOTE:sport` to `LOCAL:dport` through the
/// ingress program, as if it arrived on `ifindex`.
fn syn(daemon: &Daemon, ifindex: u32, sport: u16, dport: u16) -> Seen {
    let frame = frames::ip_frame(
        REMOTE.parse().unwrap(),
        LOCAL.parse().unwrap(),
        frames::TCP,
        &frames::tcp_syn(sport, dport),
    );
    let program = daemon.dataplane().program(Hook::Ingress).unwrap();
    let decision = common::run_frame(program, ifindex, &frame);
    let rule = decision.rule.map(|rule| {
        let (_, origin) = daemon
            .rule(decision.table, rule)
            .expect("a rule the daemon knows");
        origin.clone()
    });
    Seen {
        accept: decision.code == common::PASS,
        reason: decision.reason,
        rule,
    }
}

/// What the reference decides for that SYN on `name` under `config`.
fn reference_syn(config: &Config, name: &str, sport: u16, dport: u16) -> (bool, Option<Origin>) {
    let binding = config.interfaces.iter().find(|b| b.name == name).unwrap();
    let addresses = Addresses::resolve(config, |_| Vec::new());
    let iface = Interface {
        config,
        binding,
        addresses: &addresses,
    };
    let packet = Packet::probe(
        REMOTE.parse::<IpAddr>().unwrap(),
        LOCAL.parse().unwrap(),
        frames::TCP,
        sport,
        dport,
    );
    let mut state = reference::State::default();
    let d = reference::decide(&iface, &mut state, Direction::Ingress, &packet);
    let rule = match d.by {
        DecidedBy::Rule { group, id } => Some(Origin::Rule { group, id }),
        DecidedBy::IntraGroup => Some(Origin::IntraGroup),
        _ => None,
    };
    (d.accept, rule)
}

/// Fresh SYNs to 80, 22, 8080 and 8081 on each interface, decided as the
/// reference decides them. `sport` keeps the flows of calls apart.
fn check_verdicts(daemon: &Daemon, config: &Config, names: &[&str], sport: u16) {
    for name in names {
        for dport in [80, 22, 8080, 8081] {
            let seen = syn(daemon, ifindex(name), sport, dport);
            let (accept, rule) = reference_syn(config, name, sport, dport);
            assert_eq!(
                (seen.accept, &seen.rule),
                (accept, &rule),
                "{name}, port {dport}: {seen:?}"
            );
        }
    }
}

/// Packets the daemon counts for `rule` of sg-web, inbound, on `name`.
fn web_count(daemon: &Daemon, name: &str, rule: &str) -> u64 {
    let counts = daemon.rule_counts().unwrap();
    counts
        .iter()
        .filter(|c| c.interface == name && c.direction == Direction::Ingress)
        .filter(|c| {
            c.origin
                == Origin::Rule {
                    group: "sg-web".into(),
                    id: rule.into(),
                }
        })
        .map(|c| c.packets)
        .sum()
}

/// Runs `f` with a daemon enforcing `config` in a namespace of `n` dummy
/// interfaces (retired tables freed at once when collected).
fn with_daemon(n: usize, f: impl FnOnce(&DaemonDirs, &mut Daemon) + Send) {
    let ns = interfaces(n);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let config = parse(&config_text(&dirs, 8080, &["d1", "d2"]));
        let (mut daemon, report) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.enforced.len(), 3, "{report:?}");
        daemon.dataplane_mut().set_grace(Duration::ZERO);
        f(&dirs, &mut daemon);
        daemon.detach_everything().unwrap();
    });
}

/// Three interfaces, two of them on the same groups: those two share one
/// table per direction, and the maps hold one copy of each distinct table.
#[test]
fn interfaces_on_the_same_groups_share_their_tables() {
    with_daemon(3, |dirs, daemon| {
        let [d0, d1, d2] = ["d0", "d1", "d2"].map(ifindex);
        let tables = |i| daemon.dataplane().tables_of(i).unwrap();
        assert_eq!(tables(d1), tables(d2), "identical tables not shared");
        assert_ne!(tables(d0), tables(d1));
        // The maps hold each distinct table once: d0's inbound table,
        // the inbound table of d1 and d2, and one outbound table (no
        // group has outbound rules, so all three interfaces share it).
        let config = parse(&config_text(dirs, 8080, &["d1", "d2"]));
        let addresses = Addresses::resolve(&config, |_| Vec::new());
        let mut distinct: Vec<(Direction, CompiledTable)> = Vec::new();
        for binding in &config.interfaces {
            for dir in Direction::BOTH {
                let table = compile(&build_table(&config, binding, &addresses, dir)).unwrap();
                if !distinct.contains(&(dir, table.clone())) {
                    distinct.push((dir, table));
                }
            }
        }
        assert_eq!(distinct.len(), 3);
        let one_copy = [
            distinct.iter().map(|(_, t)| t.proto.len()).sum::<usize>(),
            distinct.iter().map(|(_, t)| t.addr.len()).sum(),
            distinct.iter().map(|(_, t)| t.port.len()).sum(),
        ];
        assert_eq!(daemon.dataplane().table_entries().unwrap(), one_copy);
        assert_eq!(tables(d0)[1], tables(d1)[1], "outbound tables not shared");
        check_verdicts(daemon, &config, &["d0", "d1", "d2"], 40000);
    });
}

/// A change to a group bound to d0 alone switches d0 only: d1 keeps its
/// table ids, and its session keeps the epoch it was checked against
/// (the ruleset of d1 did not change, so the session is not re-checked).
/// Packets on both are decided as the reference decides before and after.
#[test]
fn a_change_switches_only_the_interfaces_it_changes() {
    with_daemon(3, |dirs, daemon| {
        let [d0, d1, d2] = ["d0", "d1", "d2"].map(ifindex);
        let before = parse(&config_text(dirs, 8080, &["d1", "d2"]));
        check_verdicts(daemon, &before, &["d0", "d1", "d2"], 40000);
        // A session on d1 (HTTP is accepted).
        assert!(syn(daemon, d1, 41000, 80).accept);
        let epoch_of_d1_session = |daemon: &Daemon| {
            let sessions = daemon.dataplane().sessions().unwrap();
            let mut on_d1 = sessions.iter().filter(|(k, _)| k.ifindex == d1);
            let (_, session) = on_d1.find(|(k, _)| k.remote_port == 41000).unwrap();
            session.epoch
        };
        let epoch = epoch_of_d1_session(daemon);
        let ids = |daemon: &Daemon, i| daemon.dataplane().tables_of(i).unwrap();
        let (d0_ids, d1_ids, d2_ids) = (ids(daemon, d0), ids(daemon, d1), ids(daemon, d2));

        let after = parse(&config_text(dirs, 8081, &["d1", "d2"]));
        daemon.apply(&after).unwrap();
        assert_ne!(
            ids(daemon, d0),
            d0_ids,
            "d0's rules changed: it must switch"
        );
        assert_eq!(
            ids(daemon, d1),
            d1_ids,
            "d1 was switched though nothing changed"
        );
        assert_eq!(
            ids(daemon, d2),
            d2_ids,
            "d2 was switched though nothing changed"
        );
        // The session's next packet: not re-checked, its epoch unchanged.
        let again = syn(daemon, d1, 41000, 80);
        assert_eq!(again.reason, Reason::Session, "{again:?}");
        assert_eq!(
            epoch_of_d1_session(daemon),
            epoch,
            "d1's session was re-checked"
        );
        check_verdicts(daemon, &after, &["d0", "d1", "d2"], 42000);
    });
}

/// d1 and d2 share a table; what each decides is counted for it alone,
/// and d2 keeps its counts when it moves to tables of its own.
#[test]
fn counters_of_a_shared_table_stay_per_interface() {
    with_daemon(3, |dirs, daemon| {
        let [d1, d2] = ["d1", "d2"].map(ifindex);
        let ids = |i| daemon.dataplane().tables_of(i).unwrap();
        assert_eq!(ids(d1), ids(d2), "identical tables not shared");
        for sport in [1000, 1001] {
            assert!(syn(daemon, d1, sport, 80).accept);
        }
        assert!(syn(daemon, d2, 1002, 80).accept);
        assert!(!syn(daemon, d2, 1003, 22).accept);
        assert_eq!(web_count(daemon, "d1", "http"), 2);
        assert_eq!(web_count(daemon, "d2", "http"), 1);
        assert_eq!(web_count(daemon, "d1", "no-ssh"), 0);
        assert_eq!(web_count(daemon, "d2", "no-ssh"), 1);

        // d2 moves to d0's groups: a table it shares with d0; the http
        // rule follows it there with its count, d1's stays its own.
        let mut toml = format!("{}{}", web(), extra(8080));
        toml += &interface("d0", &["sg-web", "sg-extra"]).to_string();
        toml += &interface("d1", &["sg-web"]).to_string();
        toml += &interface("d2", &["sg-web", "sg-extra"]).to_string();
        let moved = parse(&dirs.config(&toml));
        daemon.apply(&moved).unwrap();
        daemon.collect_garbage().unwrap();
        assert!(syn(daemon, d2, 1004, 80).accept);
        assert_eq!(web_count(daemon, "d1", "http"), 2);
        assert_eq!(web_count(daemon, "d2", "http"), 2);
        assert_eq!(web_count(daemon, "d0", "http"), 0, "d0 inherited counts");
        assert_eq!(web_count(daemon, "d2", "no-ssh"), 1);
    });
}

/// d1 leaving the table it shares with d2 leaves the maps as they are;
/// d2 leaving it too retires it, and the collection after frees it.
#[test]
fn a_shared_table_is_freed_after_its_last_interface_leaves() {
    with_daemon(3, |dirs, daemon| {
        let all = daemon.dataplane().table_entries().unwrap();
        let shared = daemon.dataplane().tables_of(ifindex("d2")).unwrap();
        let only_d2 = parse(&config_text(dirs, 8080, &["d2"]));
        daemon.apply(&only_d2).unwrap();
        daemon.collect_garbage().unwrap();
        assert_eq!(daemon.dataplane().table_entries().unwrap(), all);
        assert_eq!(daemon.dataplane().tables_of(ifindex("d2")).unwrap(), shared);
        check_verdicts(daemon, &only_d2, &["d0", "d2"], 40000);

        let only_d0 = parse(&config_text(dirs, 8080, &[]));
        daemon.apply(&only_d0).unwrap();
        assert!(
            shared
                .iter()
                .all(|id| daemon.dataplane().tables_in_use().contains(id)),
            "freed before its grace period"
        );
        daemon.collect_garbage().unwrap();
        // The inbound one: d0's outbound table (no outbound rules) is the
        // same as theirs, and stays.
        let in_use = daemon.dataplane().tables_in_use();
        assert!(!in_use.contains(&shared[0]), "never freed");
        let left = daemon.dataplane().table_entries().unwrap();
        assert!(
            (0..3).all(|m| left[m] < all[m]),
            "{left:?} entries left of {all:?}"
        );
        check_verdicts(daemon, &only_d0, &["d0"], 41000);
    });
}

/// A daemon that takes over from another finds d1 and d2 on one pinned
/// table (two users): its first apply moves both to tables of its own,
/// shared again, and the pinned ones are freed after, the maps holding
/// what they held before the restart.
#[test]
fn a_restarted_daemon_takes_over_shared_tables() {
    let ns = interfaces(3);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let config = parse(&config_text(&dirs, 8080, &["d1", "d2"]));
        let (first, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        let entries = first.dataplane().table_entries().unwrap();
        let [d1, d2] = ["d1", "d2"].map(ifindex);
        let pinned = first.dataplane().tables_of(d1).unwrap();
        // Stopped without `--detach`: its pins stay.
        drop(first);
        let (mut daemon, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        daemon.dataplane_mut().set_grace(Duration::ZERO);
        let now = daemon.dataplane().tables_of(d1).unwrap();
        assert_eq!(daemon.dataplane().tables_of(d2).unwrap(), now);
        assert_ne!(
            now, pinned,
            "the adopted tables were kept (content unknown)"
        );
        check_verdicts(&daemon, &config, &["d0", "d1", "d2"], 43000);
        daemon.collect_garbage().unwrap();
        let in_use = daemon.dataplane().tables_in_use();
        assert!(pinned.iter().all(|id| !in_use.contains(id)), "never freed");
        assert_eq!(daemon.dataplane().table_entries().unwrap(), entries);
        daemon.detach_everything().unwrap();
    });
}
