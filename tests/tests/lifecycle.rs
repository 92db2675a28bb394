//! The daemon's life around enforcement: the pinned programs keep the last
//! ruleset enforced while `sgd` is down, a restart (graceful or `kill -9`)
//! takes over sessions and links without a gap, and `sgd --detach` takes
//! sg off for good. Each holds in both attach modes (`tcx::…`, `tc::…`),
//! and across a change of mode.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use sg_tests::*;

/// HTTP open to everyone (IPv4), on the server's interface.
fn web() -> Group {
    Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")])
}

in_each_attach_mode!(
    enforcement_outlives_sgd_and_detach_takes_it_off,
    a_connection_survives_five_restarts_and_a_blocked_port_stays_blocked,
);

fn enforcement_outlives_sgd_and_detach_takes_it_off(mode: Attach) {
    let t = Topology::pair("life").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22), s.v4(80)]);
    let mut sgd = mode.enforce(s, &[web()]);
    check(&[probe("ssh", Tcp(22), c, s.ipv4(), DROPPED)]);
    sgd.stop().unwrap();
    // Down, but the pinned links (or the TC filters) still enforce the
    // last rules.
    mode.check_kernel(&sgd, s, SERVER_IF).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("ssh, sgd down",  Tcp(22), c, s.ipv4(), DROPPED),
        probe("http, sgd down", Tcp(80), c, s.ipv4(), PASS),
    ]);

    sgd.detach().unwrap();
    // The kernel frees an unpinned link shortly after, not at once.
    let open =
        (0..30).any(|_| tcp_connect(c, s.v4(22), Duration::from_millis(100)) == Outcome::Connected);
    assert!(open, "port 22 still blocked after sgd --detach");
    // Classic TC: sg's filters are gone, and so is the qdisc sg added.
    let tc = TcState::of(s, SERVER_IF).unwrap();
    assert!(tc.sg_filters().is_empty() && !tc.clsact, "{tc:#?}");
}

fn a_connection_survives_five_restarts_and_a_blocked_port_stays_blocked(mode: Attach) {
    restarts_open_no_gap(&[mode; 6]);
}

/// Every change of mode a restart can make: TCX to classic TC, classic TC
/// to `auto` (TCX here), and back to classic TC.
#[test]
fn a_connection_survives_restarts_that_switch_the_attach_mode() {
    use Attach::*;
    restarts_open_no_gap(&[Tcx, Tc, Auto, Tc]);
}

/// A connection carries data all through restarts of sgd (graceful and
/// `kill -9` in turn), each into the attach mode of its round (`modes[0]`
/// is the first start's), while a client knocks on a blocked port without
/// a pause, sgd up or down: no knock ever gets through, so no restart, nor
/// a change of mode, leaves the interface without sg's classifier for a
/// moment.
fn restarts_open_no_gap(modes: &[Attach]) {
    let t = Topology::pair("rst").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let rules = groups_on(SERVER_IF, &[web()]);
    let mut sgd = modes[0].start(s, &rules).unwrap();

    // Data flows continuously over one connection while sgd restarts.
    let mut conn = TcpConn::open(c, None, s.v4(80), Duration::from_secs(2)).unwrap();
    let stop = AtomicBool::new(false);
    let echoes = AtomicUsize::new(0);
    thread::scope(|scope| {
        let pump = scope.spawn(|| -> anyhow::Result<()> {
            while !stop.load(Ordering::SeqCst) {
                conn.echo(b"still here")?;
                echoes.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        let knocker = scope.spawn(|| {
            let mut through = 0;
            while !stop.load(Ordering::SeqCst) {
                if tcp_connect(c, s.v4(22), Duration::from_millis(100)) == Outcome::Connected {
                    through += 1;
                }
            }
            through
        });
        // Both threads end when this scope's body does, also on a panic.
        let _stop = StopOnDrop(&stop);

        for (round, &mode) in modes.iter().enumerate().skip(1) {
            let before = echoes.load(Ordering::SeqCst);
            if round % 2 == 1 {
                sgd.stop().unwrap();
            } else {
                nix::sys::signal::kill(Pid::from_raw(sgd.pid() as i32), Signal::SIGKILL).unwrap();
                sgd.stop().unwrap(); // reaps it
            }
            // Down for a while: the knocks meet the pinned programs alone.
            thread::sleep(Duration::from_millis(300));
            sgd.restart(s, &mode.config(&rules)).unwrap();
            mode.check_log(&sgd).unwrap();
            mode.check_kernel(&sgd, s, SERVER_IF).unwrap();
            assert!(
                echoes.load(Ordering::SeqCst) > before,
                "no data went through during restart {round} (into {mode})"
            );
            assert!(
                !pump.is_finished(),
                "the connection failed during restart {round} (into {mode})"
            );
        }
        stop.store(true, Ordering::SeqCst);
        pump.join()
            .unwrap()
            .expect("every echo came back over the same connection");
        assert_eq!(
            knocker.join().unwrap(),
            0,
            "connections to the blocked port got through during the restarts"
        );
    });
    assert!(sgd.log().contains("enforced"), "{}", sgd.log());
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_interface_that_appears_later_is_enforced_within_a_second() {
    let t = Topology::pair("hot").unwrap();
    let (s, c) = (t.server(), t.client());
    let config = format!(
        "{}{}",
        groups_on(SERVER_IF, &[web()]),
        interface("hp0", &["sg-web"])
    );
    let sgd = Daemon::start(s, &config).unwrap();
    assert!(
        sgd.log().contains("hp0"),
        "the missing interface is reported: {}",
        sgd.log()
    );

    // A new link between the two hosts, with its own addresses.
    veth_pair(
        s,
        "hp0",
        &["198.51.100.1/24"],
        c,
        "hp1",
        &["198.51.100.2/24"],
    )
    .unwrap();
    let new_link: IpAddr = "198.51.100.1".parse().unwrap();
    let _srv = tcp_servers(
        s,
        &[SocketAddr::new(new_link, 22), SocketAddr::new(new_link, 80)],
    );
    thread::sleep(Duration::from_secs(1));
    #[rustfmt::skip]
    check(&[
        probe("ssh over the new link",  Tcp(22), c, new_link, DROPPED),
        probe("http over the new link", Tcp(80), c, new_link, PASS),
    ]);
    assert!(sgd.log().contains("interfaces changed"), "{}", sgd.log());
}

#[test]
fn counters_name_the_rule_that_dropped_a_connection() {
    let t = Topology::pair("ctr").unwrap();
    let (s, c) = (t.server(), t.client());
    let _ssh = tcp_servers(s, &[s.v4(22)]);
    let with_drop = web().rules([drop_in("tcp", "22/22", "0.0.0.0/0").id("no-ssh")]);
    let config = format!(
        "metrics_address = \"127.0.0.1:9630\"\n{}",
        groups_on(SERVER_IF, &[with_drop])
    );
    let sgd = Daemon::start(s, &config).unwrap();
    check(&[probe("ssh", Tcp(22), c, s.ipv4(), DROPPED)]);

    // The drop records name the rule too (`sgctl drops`).
    let drops = sgd.ctl().ok(&["drops", "--output", "json"]);
    assert!(
        drops.contains("\"dst_port\": 22")
            && drops.contains("\"reason\": \"rule-drop\"")
            && drops.contains("\"rule\": \"sg-web/no-ssh\""),
        "{drops}"
    );
    // As a table: the wall-clock time (UTC), the protocol by name.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let today = &sg_daemon::clock::rfc3339_utc(now)[..10];
    let table = sgd.ctl().ok(&["drops"]);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with(today) && row.contains(" tcp "), "{table}");
    // Followed as JSON: one object a line, as they come.
    let mut follow = sgd
        .ctl()
        .command(&["--output", "json", "drops", "--follow"]);
    let mut child = follow.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let drop: sg_daemon::api::serde_json::Value =
        sg_daemon::api::serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(drop["protocol"], 6, "{line}");
    assert_eq!(drop["protocol_name"], "tcp", "{line}");
    assert!(
        drop["time"].as_str().unwrap_or_default().starts_with(today),
        "{line}"
    );

    let metrics = metrics(s, "127.0.0.1:9630").unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sg_rule_packets_total") && l.contains("rule=\"no-ssh\""))
        .unwrap_or_else(|| panic!("no counter for the drop rule in:\n{metrics}"));
    assert!(
        line.contains("interface=\"sg0\"") && line.contains("direction=\"ingress\""),
        "{line}"
    );
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "{line}");
    assert!(
        metrics.contains("sg_decisions_total{reason=\"rule-drop\"}"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sg_interface_packets_total") && l.contains("verdict=\"drop\"")),
        "{metrics}"
    );
}

/// The pinned session tables keep their size across a restart with
/// another `session_table_size`, and the log says how to apply it; a
/// detach and a fresh start applies it.
#[test]
fn a_restart_keeps_the_size_of_the_pinned_session_tables() {
    let t = Topology::pair("ctsize").unwrap();
    let s = t.server();
    let config = |size: u32| {
        format!(
            "session_table_size = {size}\nmetrics_address = \"127.0.0.1:9630\"\n{}",
            groups_on(SERVER_IF, &[web()])
        )
    };
    let capacity = |ns: &Netns| {
        let text = metrics(ns, "127.0.0.1:9630").unwrap();
        let line = "sg_session_capacity{table=\"answered\"} ";
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in:\n{text}"))
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let mut sgd = Daemon::start(s, &config(4096)).unwrap();
    assert_eq!(capacity(s), 4096);
    sgd.restart(s, &config(8192)).unwrap();
    assert_eq!(capacity(s), 4096);
    assert!(sgd.log().contains("keeps its size"), "{}", sgd.log());
    sgd.detach().unwrap();
    sgd.restart(s, &config(8192)).unwrap();
    assert_eq!(capacity(s), 8192);
}

/// The packets `sg_rule_packets_total` reports for rule `id` of `sg-web`
/// inbound on the server's interface, if it reports the rule.
fn rule_packets(metrics: &str, id: &str) -> Option<u64> {
    let rule = format!("rule=\"{id}\"");
    let line = metrics.lines().find(|l| {
        l.starts_with("sg_rule_packets_total")
            && l.contains(&rule)
            && l.contains("direction=\"ingress\"")
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Counters follow rules, not kernel tables (issue #9, item 3): a rule a
/// change did not touch keeps its count across the change (and after the
/// table it counted in is freed), a removed rule's series ends at once,
/// and a new rule starts from nothing even when its table takes the id of
/// a freed table that had counts.
#[test]
fn rule_counters_follow_rules_across_changes() {
    let t = Topology::pair("rcf").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22), s.v4(80), s.v4(443)]);
    let http = || accept_in("tcp", "80/80", "0.0.0.0/0").id("http");
    let https = || accept_in("tcp", "443/443", "0.0.0.0/0").id("https");
    let config = |rules: Vec<Rule>| {
        format!(
            "metrics_address = \"127.0.0.1:9630\"\n{}",
            groups_on(SERVER_IF, &[Group::new("sg-web").rules(rules)])
        )
    };
    let no_ssh = drop_in("tcp", "22/22", "0.0.0.0/0").id("no-ssh");
    let mut sgd = Daemon::start(s, &config(vec![http(), https(), no_ssh])).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("http",  Tcp(80),  c, s.ipv4(), PASS),
        probe("https", Tcp(443), c, s.ipv4(), PASS),
        probe("ssh",   Tcp(22),  c, s.ipv4(), DROPPED),
    ]);
    thread::sleep(Duration::from_millis(500));
    let before = metrics(s, "127.0.0.1:9630").unwrap();
    let counts = [
        rule_packets(&before, "http"),
        rule_packets(&before, "https"),
    ];
    assert!(counts.iter().all(|c| c.unwrap_or(0) >= 1), "{before}");
    assert!(
        rule_packets(&before, "no-ssh").unwrap_or(0) >= 1,
        "{before}"
    );

    // Changes that keep http and https; each frees the tables of the one
    // before (a grace period later), and the table ids come round again.
    let dns =
        |n: u32| accept_in("udp", "53/53", format!("198.51.100.{n}/32")).id(&format!("dns{n}"));
    for n in 1..=3 {
        sgd.reload_with(&config(vec![http(), https(), dns(n)]))
            .unwrap();
        let now = metrics(s, "127.0.0.1:9630").unwrap();
        assert_eq!(rule_packets(&now, "no-ssh"), None, "change {n}: {now}");
        thread::sleep(GRACE_AND_SOME);
        let now = metrics(s, "127.0.0.1:9630").unwrap();
        let kept = [rule_packets(&now, "http"), rule_packets(&now, "https")];
        assert_eq!(kept, counts, "change {n}: {now}");
        assert_eq!(rule_packets(&now, "no-ssh"), None, "change {n}: {now}");
        assert_eq!(
            rule_packets(&now, &format!("dns{n}")).unwrap_or(0),
            0,
            "{now}"
        );
    }
    // Only new rules, in tables that take the ids of the first ones.
    let fresh: Vec<Rule> = (10..14).map(dns).collect();
    sgd.reload_with(&config(fresh)).unwrap();
    thread::sleep(GRACE_AND_SOME);
    let now = metrics(s, "127.0.0.1:9630").unwrap();
    let counted: Vec<&str> = now
        .lines()
        .filter(|l| l.starts_with("sg_rule_packets_total") && !l.ends_with(" 0"))
        .collect();
    assert!(counted.is_empty(), "new rules with counts: {counted:?}");
}

/// Longer than the grace period after which `sgd` frees switched-out
/// tables.
const GRACE_AND_SOME: Duration = Duration::from_millis(1800);
