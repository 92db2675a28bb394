//! The attach modes themselves (`[daemon] attach`); the seeds and the
//! lifecycle tests run in both. `auto` picks TCX on this kernel (6.18), so
//! its fallback to classic TC is shown only by a unit test of how it reads
//! the kernel's answer (`dataplane::tcx`). Classic TC shares the clsact
//! qdisc with other tools: sg touches its own filter only, and removes the
//! qdisc only if it added it and nobody else's filter is on it.

use sg_daemon::dataplane::{TC_HANDLE, TC_PRIORITY};
use sg_tests::*;

fn ssh_only_from_the_docs() -> Group {
    Group::new("sg-ssh").rules([accept_in("tcp", "22/22", "203.0.113.0/24")])
}

#[test]
fn auto_attaches_with_tcx_on_this_kernel() {
    let t = Topology::pair("auto").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22)]);
    // Checks the log: "attaching with tcx (attach = "auto": the kernel has TCX)".
    let sgd = Attach::Auto.enforce(s, &[ssh_only_from_the_docs()]);
    Attach::Auto.check_kernel(&sgd, s, SERVER_IF).unwrap();
    check(&[probe("ssh", Tcp(22), c, s.ipv4(), DROPPED)]);
}

/// A filter of another tool, on both hooks: u32, at a priority of its own,
/// matching an address no probe uses.
fn add_foreign_filters(ns: &Netns) {
    for hook in ["ingress", "egress"] {
        ns.exec(&[
            "tc",
            "filter",
            "add",
            "dev",
            SERVER_IF,
            hook,
            "prio",
            "7",
            "protocol",
            "ip",
            "u32",
            "match",
            "ip",
            "dst",
            "198.51.100.99/32",
            "classid",
            "1:1",
        ])
        .unwrap();
    }
}

/// The lines of filters that are not sg's.
fn foreign(state: &TcState) -> Vec<String> {
    [&state.ingress, &state.egress]
        .into_iter()
        .flat_map(|text| text.lines())
        .filter(|l| l.contains("u32"))
        .map(str::to_owned)
        .collect()
}

/// The kernel ids of the programs in sg's filters, which must sit at sg's
/// priority and handle.
fn sg_program_ids(state: &TcState) -> Vec<u32> {
    let filters = state.sg_filters();
    assert_eq!(filters.len(), 2, "one sg filter per hook: {state:#?}");
    filters
        .iter()
        .map(|line| {
            assert!(
                line.contains(&format!("pref {TC_PRIORITY} "))
                    && line.contains(&format!("handle {TC_HANDLE:#x} "))
                    && line.contains("direct-action"),
                "{line}"
            );
            let id = line
                .split(" id ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next());
            id.and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("no program id in {line}"))
        })
        .collect()
}

#[test]
fn classic_tc_replaces_its_own_filter_and_leaves_other_tools_alone() {
    // Another tool's clsact qdisc and filters are there before sg starts,
    // or come onto the qdisc sg added; either way the qdisc stays after
    // `sgd --detach` (one sg added and nobody else uses goes: see
    // lifecycle's `tc::enforcement_outlives_sgd_and_detach_takes_it_off`).
    // Each case on its own hosts, at the same time.
    #[rustfmt::skip]
    let cases = [
        ("another tool's filters",      true,  false),
        ("filters added on sg's qdisc", false, true),
    ];
    std::thread::scope(|scope| {
        for (case, before, after) in cases {
            scope.spawn(move || tc_case(case, before, after));
        }
    });
}

fn tc_case(case: &str, before: bool, after: bool) {
    let t = Topology::pair("tc").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22)]);
    if before {
        s.exec(&["tc", "qdisc", "add", "dev", SERVER_IF, "clsact"])
            .unwrap();
        add_foreign_filters(s);
    }
    let mut sgd = Attach::Tc.enforce(s, &[ssh_only_from_the_docs()]);
    let first = TcState::of(s, SERVER_IF).unwrap();
    let first_ids = sg_program_ids(&first);
    if after {
        add_foreign_filters(s);
    }
    let others = foreign(&TcState::of(s, SERVER_IF).unwrap());
    assert!(!others.is_empty(), "{case}");

    // A restart puts the new program in the same filter.
    let config = Attach::Tc.config(&groups_on(SERVER_IF, &[ssh_only_from_the_docs()]));
    sgd.restart(s, &config).unwrap();
    let second = TcState::of(s, SERVER_IF).unwrap();
    let second_ids = sg_program_ids(&second);
    assert!(
        first_ids.iter().all(|id| !second_ids.contains(id)),
        "{case}: the filters still run the old programs: {second:#?}"
    );
    assert_eq!(foreign(&second), others, "{case}");
    check(&[probe("ssh", Tcp(22), c, s.ipv4(), DROPPED)]);

    sgd.stop().unwrap();
    sgd.detach().unwrap();
    let last = TcState::of(s, SERVER_IF).unwrap();
    assert!(last.sg_filters().is_empty(), "{case}: {last:#?}");
    assert_eq!(foreign(&last), others, "{case}");
    assert!(last.clsact, "{case}: {last:#?}");
    check(&[probe("ssh, detached", Tcp(22), c, s.ipv4(), PASS)]);
}
