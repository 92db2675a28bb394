//! Review of issue #9 (sharing, refcounts, migration, protection): the
//! defects found, each as a test that failed before its fix.

use std::{path::Path, time::Duration};

use sg_daemon::{daemon::Daemon, dataplane::Hook, model::Config};
mod common;

use sg_tests::{Attach, DaemonDirs, Group, Netns, TcState, accept_in, drop_in, frames, interface};

fn parse(text: &str) -> Config {
    sg_daemon::config::parse(Path::new("review.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A namespace with veths `d0`..`d{n-1}` (peers `p0`..), up.
fn interfaces(n: usize) -> Netns {
    let ns = Netns::new("review").unwrap();
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

/// Whether an inbound SYN from 192.0.2.1 to `dport` passes on `ifindex`.
fn syn_passes(daemon: &Daemon, ifindex: u32, sport: u16, dport: u16) -> bool {
    let frame = frames::ip_frame(
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        frames::TCP,
        &frames::tcp_syn(sport, dport),
    );
    let program = daemon.dataplane().program(Hook::Ingress).unwrap();
    common::run_frame(program, ifindex, &frame).code == common::PASS
}

/// How many programs TCX runs on `name`'s (ingress, egress) hooks: sg's
/// one each, or the interface is not enforced.
fn tcx_programs(name: &str) -> (usize, usize) {
    use aya::programs::{SchedClassifier, TcAttachType};
    let count = |at| {
        SchedClassifier::query_tcx(name, at)
            .map(|(_, progs)| progs.len())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    (count(TcAttachType::Ingress), count(TcAttachType::Egress))
}

/// d0 opens 80 and 8080, d1 opens 80 only; SSH is refused on both.
fn swap_config(dirs: &DaemonDirs) -> Config {
    swap_config_in(dirs, Attach::Tcx)
}

fn swap_config_in(dirs: &DaemonDirs, mode: Attach) -> Config {
    let web = Group::new("sg-web").rules([
        accept_in("tcp", "80/80", "0.0.0.0/0").id("http"),
        drop_in("tcp", "22/22", "192.0.2.0/24").id("no-ssh"),
    ]);
    let extra = Group::new("sg-extra").rules([accept_in("tcp", "8080/8080", "0.0.0.0/0").id("x")]);
    let mut toml = mode.config(&format!("{web}{extra}"));
    toml += &interface("d0", &["sg-web", "sg-extra"]).to_string();
    toml += &interface("d1", &["sg-web"]).to_string();
    parse(&dirs.config(&toml))
}

/// Two bound interfaces swap names (d0 <-> d1, so each name now has the
/// other's ifindex). The next apply must leave both enforced, each with
/// its own name's rules: uninstalling "the old ifindex of this name" must
/// not remove the entry just installed for the other name.
#[test]
fn two_bound_interfaces_swapping_names_stay_enforced() {
    swapping_names(Attach::Tcx);
}

#[test]
fn two_bound_interfaces_swapping_names_stay_enforced_in_tc_mode() {
    swapping_names(Attach::Tc);
}

/// The hooks on `name` are sg's, in `mode`.
fn check_hooks(ns: &Netns, name: &str, mode: Attach) {
    let tc = TcState::of(ns, name).unwrap();
    let want = match mode {
        Attach::Tc => ((0, 0), 2),
        _ => ((1, 1), 0),
    };
    assert_eq!(
        (tcx_programs(name), tc.sg_filters().len()),
        want,
        "{name}: {tc:?}"
    );
}

fn swapping_names(mode: Attach) {
    let ns = interfaces(2);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let config = swap_config_in(&dirs, mode);
        let (mut daemon, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        daemon.dataplane_mut().set_grace(Duration::ZERO);
        assert!(!syn_passes(&daemon, ifindex("d0"), 1000, 22));
        assert!(syn_passes(&daemon, ifindex("d0"), 1001, 8080));
        assert!(!syn_passes(&daemon, ifindex("d1"), 1002, 8080));

        for (from, to) in [("d0", "tmp"), ("d1", "d0"), ("tmp", "d1")] {
            ns.ip(&["link", "set", from, "down"]).unwrap();
            ns.ip(&["link", "set", from, "name", to]).unwrap();
            ns.ip(&["link", "set", to, "up"]).unwrap();
        }
        assert!(!daemon.in_sync(&config));
        let applied = daemon.apply(&config);
        let (d0, d1) = (ifindex("d0"), ifindex("d1"));
        // Whatever the apply answered, neither interface may fail open.
        assert!(!syn_passes(&daemon, d0, 1900, 22), "SSH passes on d0");
        assert!(!syn_passes(&daemon, d1, 1901, 22), "SSH passes on d1");
        applied.unwrap_or_else(|e| panic!("{e:#}"));
        daemon.collect_garbage().unwrap();
        assert!(
            daemon.dataplane().tables_of(d0).is_some(),
            "d0 (ifindex {d0}) has no tables after the swap"
        );
        assert!(
            daemon.dataplane().tables_of(d1).is_some(),
            "d1 (ifindex {d1}) has no tables after the swap"
        );
        assert!(!syn_passes(&daemon, d0, 2000, 22), "SSH passes on d0");
        assert!(!syn_passes(&daemon, d1, 2001, 22), "SSH passes on d1");
        assert!(syn_passes(&daemon, d0, 2002, 8080), "d0 lost its 8080");
        assert!(!syn_passes(&daemon, d1, 2003, 8080), "d1 got d0's 8080");
        // Some time for links whose pins went to be freed.
        std::thread::sleep(Duration::from_millis(200));
        check_hooks(&ns, "d0", mode);
        check_hooks(&ns, "d1", mode);
        assert!(daemon.in_sync(&config));
        // A restart takes the hooks over in place under their new names.
        drop(daemon);
        let (mut daemon, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        std::thread::sleep(Duration::from_millis(200));
        check_hooks(&ns, "d0", mode);
        check_hooks(&ns, "d1", mode);
        assert!(!syn_passes(&daemon, d1, 2004, 22), "SSH passes on d1");
        assert!(syn_passes(&daemon, d0, 2005, 8080), "d0 lost its 8080");
        daemon.detach_everything().unwrap();
    });
}

/// Packets the daemon counts for sg-web's `http` rule, inbound, on `name`.
fn http_count(daemon: &Daemon, name: &str) -> u64 {
    use sg_daemon::{compile::Origin, model::Direction};
    let http = Origin::Rule {
        group: "sg-web".into(),
        id: "http".into(),
    };
    let counts = daemon.rule_counts().unwrap();
    counts
        .iter()
        .filter(|c| c.interface == name && c.direction == Direction::Ingress && c.origin == http)
        .map(|c| c.packets)
        .sum()
}

/// After the swap, the interface now named d1 is another binding than the
/// one d1 named before: the counts of d0's rules, made on the interface
/// that goes by d1 now, must not show up as d1's (nothing inherited).
#[test]
fn counts_do_not_follow_an_interface_to_another_name() {
    let ns = interfaces(2);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let config = swap_config(&dirs);
        let (mut daemon, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        daemon.dataplane_mut().set_grace(Duration::ZERO);
        for sport in [1000, 1001] {
            assert!(syn_passes(&daemon, ifindex("d0"), sport, 80));
        }
        assert_eq!(http_count(&daemon, "d0"), 2);
        assert_eq!(http_count(&daemon, "d1"), 0);
        for (from, to) in [("d0", "tmp"), ("d1", "d0"), ("tmp", "d1")] {
            ns.ip(&["link", "set", from, "down"]).unwrap();
            ns.ip(&["link", "set", from, "name", to]).unwrap();
            ns.ip(&["link", "set", to, "up"]).unwrap();
        }
        daemon.apply(&config).unwrap_or_else(|e| panic!("{e:#}"));
        daemon.collect_garbage().unwrap();
        assert_eq!(http_count(&daemon, "d1"), 0, "d1 inherited d0's counts");
        daemon.detach_everything().unwrap();
    });
}

/// d0 goes away and d1 is renamed d0 (a VM's tap handed to another
/// binding): the apply that follows enforces d0's rules on the interface
/// at once and reports d1 missing; the interface is never left without
/// its hooks or its entry.
#[test]
fn a_bound_interface_renamed_to_a_bound_name_that_went_away() {
    let ns = interfaces(2);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let config = swap_config(&dirs);
        let (mut daemon, _) = Daemon::start(&config).unwrap_or_else(|e| panic!("{e:#}"));
        daemon.dataplane_mut().set_grace(Duration::ZERO);
        let index = ifindex("d1");
        ns.ip(&["link", "del", "d0"]).unwrap();
        ns.ip(&["link", "set", "d1", "down"]).unwrap();
        ns.ip(&["link", "set", "d1", "name", "d0"]).unwrap();
        ns.ip(&["link", "set", "d0", "up"]).unwrap();
        let applied = daemon.apply(&config);
        assert!(!syn_passes(&daemon, index, 1900, 22), "SSH passes on d0");
        let report = applied.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.missing, ["d1"]);
        assert!(
            syn_passes(&daemon, index, 1901, 8080),
            "d0's rules not in force"
        );
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(tcx_programs("d0"), (1, 1), "d0's hooks");
        let attached: Vec<&str> = daemon.dataplane().attached().collect();
        assert_eq!(attached, ["d0"]);
        assert!(daemon.in_sync(&config));
        daemon.detach_everything().unwrap();
    });
}

/// An enforced interface renamed while sgd is down, the config renamed
/// to match: the restarted daemon takes its pinned links over (one
/// program per hook), rather than attaching a second program beside the
/// earlier daemon's, which nothing would ever remove.
#[test]
fn a_restart_after_a_rename_takes_the_hooks_over() {
    let ns = interfaces(1);
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        let web =
            Group::new("sg-web").rules([drop_in("tcp", "22/22", "192.0.2.0/24").id("no-ssh")]);
        let text = |name: &str| format!("{web}{}", interface(name, &["sg-web"]));
        let (daemon, _) =
            Daemon::start(&parse(&dirs.config(&text("d0")))).unwrap_or_else(|e| panic!("{e:#}"));
        drop(daemon);
        ns.ip(&["link", "set", "d0", "down"]).unwrap();
        ns.ip(&["link", "set", "d0", "name", "wan0"]).unwrap();
        ns.ip(&["link", "set", "wan0", "up"]).unwrap();
        let (mut daemon, _) =
            Daemon::start(&parse(&dirs.config(&text("wan0")))).unwrap_or_else(|e| panic!("{e:#}"));
        std::thread::sleep(Duration::from_millis(200));
        check_hooks(&ns, "wan0", Attach::Tcx);
        daemon.detach_everything().unwrap();
    });
}

/// A ruleset whose interfaces would use more than half of the kernel
/// table ids is refused up front, changing nothing: a restarted daemon
/// writes every table afresh beside the ones it takes over (their
/// contents are not known), so a host enforcing it could not restart or
/// upgrade. Half of them is fine. The interfaces need not exist: bound
/// ones count before they appear.
#[test]
fn a_ruleset_a_restart_could_not_take_over_is_refused() {
    let config = |n: usize| {
        let mut toml = String::new();
        for i in 0..n {
            let port = 1000 + i;
            let group = Group::new(&format!("sg-{i}")).rules([
                accept_in("tcp", &format!("{port}/{port}"), "0.0.0.0/0").id("in"),
                sg_tests::accept_out("tcp", &format!("{port}/{port}"), "0.0.0.0/0").id("out"),
            ]);
            toml += &group.to_string();
        }
        for i in 0..n {
            toml += &interface(&format!("v{i}"), &[&format!("sg-{i}")]).to_string();
        }
        toml
    };
    let ns = Netns::new("review-big").unwrap();
    let dirs = DaemonDirs::new().unwrap();
    ns.run_in(|| {
        // 1024 interfaces on distinct groups: 2048 tables, half of 4096.
        let (mut daemon, report) =
            Daemon::start(&parse(&dirs.config(&config(1024)))).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.missing.len(), 1024);
        let err = daemon
            .apply(&parse(&dirs.config(&config(1025))))
            .expect_err("2050 tables: more than a restart can take over");
        let err = format!("{err:#}");
        assert!(err.contains("2050 kernel tables"), "{err}");
        assert!(err.contains("could not restart"), "{err}");
        daemon.detach_everything().unwrap();
    });
}
