//! The seeds' scenarios (seeds/001, 003) with real traffic: `sgd` runs in
//! the server's namespace and enforces on its veth; clients probe it the way
//! Neutron's connection tester does. Blocked means dropped, so a blocked
//! TCP connect times out rather than being refused.
//!
//! Each scenario runs once per attach mode: `tcx::…` with TCX links,
//! `tc::…` with classic TC (a clsact qdisc and a direct-action filter, the
//! fallback for kernels before 6.6).

use std::time::Duration;

use sg_tests::*;

/// The seeds' web server: HTTP and HTTPS open to everyone, v4 and v6. The
/// first rule (HTTP from any IPv4 address) opens `first` ("80/80").
fn web_opening(first: &str) -> String {
    groups_on(
        SERVER_IF,
        &[Group::new("sg-web").rules([
            accept_in("tcp", first, "0.0.0.0/0"),
            accept_in("tcp", "443/443", "0.0.0.0/0"),
            accept_in("tcp", "80/80", "::/0"),
            accept_in("tcp", "443/443", "::/0"),
        ])],
    )
}

/// The seeds' web server.
fn web() -> String {
    web_opening("80/80")
}

in_each_attach_mode!(
    web_server_opens_80_and_443_and_nothing_else,
    ssh_from_one_client_address_only,
    outbound_connections_and_their_replies_pass,
    unsolicited_udp_is_dropped_and_replies_are_delivered,
    sighup_applies_a_new_file_and_keeps_the_old_rules_on_a_bad_one,
);

fn web_server_opens_80_and_443_and_nothing_else(mode: Attach) {
    let t = Topology::pair("web").unwrap();
    let (s, c) = (t.server(), t.client());
    let all: Vec<_> = [80, 443, 22]
        .into_iter()
        .flat_map(|p| [s.v4(p), s.v6(p)])
        .collect();
    let _servers = tcp_servers(s, &all);
    // Before enforcement everything is reachable (the harness is sound).
    #[rustfmt::skip]
    check(&[
        probe("ssh, without sgd",  Tcp(22), c, s.ipv4(), PASS),
        probe("ping, without sgd", Ping,    c, s.ipv4(), PASS),
    ]);

    let _sgd = mode.start(s, &web()).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("http",          Tcp(80),      c, s.ipv4(), PASS),
        probe("http, v6",      Tcp(80),      c, s.ipv6(), PASS),
        probe("http request",  TcpEcho(80),  c, s.ipv4(), PASS),
        probe("https",         Tcp(443),     c, s.ipv4(), PASS),
        probe("https, v6",     Tcp(443),     c, s.ipv6(), PASS),
        probe("https request", TcpEcho(443), c, s.ipv4(), PASS),
        probe("ssh",           Tcp(22),      c, s.ipv4(), DROPPED),
        probe("ssh, v6",       Tcp(22),      c, s.ipv6(), DROPPED),
        probe("ping",          Ping,         c, s.ipv4(), DROPPED),
        probe("ping, v6",      Ping,         c, s.ipv6(), DROPPED),
    ]);
}

fn ssh_from_one_client_address_only(mode: Attach) {
    let t = Topology::lan("ssh", 2).unwrap();
    let s = t.server();
    let _ssh = tcp_servers(s, &[s.v4(22)]);
    let admin = Group::new("sg-admin").rules([accept_in("tcp", "22/22", t.client().ipv4())]);
    let _sgd = mode.enforce(s, &[admin]);
    #[rustfmt::skip]
    check(&[
        probe("from the admin's address", Tcp(22), t.client(),  s.ipv4(), PASS),
        probe("from another address",     Tcp(22), t.client2(), s.ipv4(), DROPPED),
    ]);
}

fn outbound_connections_and_their_replies_pass(mode: Attach) {
    let t = Topology::pair("out").unwrap();
    let (s, c) = (t.server(), t.client());
    let _remote = tcp_servers(c, &[c.v4(8080), c.v6(8080)]);
    let _sgd = mode.start(s, &web()).unwrap();

    // No inbound rule covers the client's replies; the session does.
    #[rustfmt::skip]
    check(&[
        probe("out",      TcpEcho(8080), s, c.ipv4(), PASS),
        probe("out, v6",  TcpEcho(8080), s, c.ipv6(), PASS),
        probe("ping",     Ping,          s, c.ipv4(), PASS),
        probe("ping, v6", Ping,          s, c.ipv6(), PASS),
    ]);
    // The client cannot open the same port towards the server.
    let _inbound = tcp_servers(s, &[s.v4(8080)]);
    #[rustfmt::skip]
    check(&[probe("the same port inbound", Tcp(8080), c, s.ipv4(), DROPPED)]);
}

fn unsolicited_udp_is_dropped_and_replies_are_delivered(mode: Attach) {
    let t = Topology::pair("udp").unwrap();
    let (s, c) = (t.server(), t.client());
    let sink = UdpSink::start(s, s.v4(5353)).unwrap();
    let _echo = udp_servers(c, &[c.v4(5353), c.v6(5353)]);
    let _sgd = mode.start(s, &web()).unwrap();

    udp_send(c, None, s.v4(5353), b"unsolicited").unwrap();
    assert!(
        sink.wait_for(1, Duration::from_millis(500)).is_empty(),
        "an unsolicited datagram reached the server"
    );
    #[rustfmt::skip]
    check(&[
        probe("a question and its answer",     Udp(5353), s, c.ipv4(), PASS),
        probe("a question and its answer, v6", Udp(5353), s, c.ipv6(), PASS),
    ]);
    // Sent from the server's sink socket, the reply comes back to it.
    sink.send_to(c.v4(5353), b"question").unwrap();
    assert_eq!(sink.wait_for(1, Duration::from_secs(2)).len(), 1);
}

fn sighup_applies_a_new_file_and_keeps_the_old_rules_on_a_bad_one(mode: Attach) {
    let t = Topology::pair("hup").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22), s.v4(80)]);
    let mut sgd = mode.start(s, &web()).unwrap();
    check(&[probe("ssh", Tcp(22), c, s.ipv4(), DROPPED)]);

    // The rule that opened 80 opens 22 instead.
    let with_ssh = web_opening("22/22");
    #[rustfmt::skip]
    let rows = [
        probe("ssh, now open",    Tcp(22), c, s.ipv4(), PASS),
        probe("http, now closed", Tcp(80), c, s.ipv4(), DROPPED),
    ];
    sgd.reload_with(&mode.config(&with_ssh)).unwrap();
    check(&rows);

    sgd.reload_with(
        &mode
            .config(&with_ssh)
            .replace("policy = \"accept\"", "policy = \"allow\""),
    )
    .unwrap();
    assert!(sgd.log().contains("reload refused"), "{}", sgd.log());
    check(&rows);
}

#[test]
fn check_reports_every_problem_and_changes_nothing() {
    let (ok, out) = sgd_check(&web());
    assert!(ok, "{out}");
    let bad = web()
        .replacen("policy = \"accept\"", "policy = \"allow\"", 1)
        .replacen("port_range = \"443/443\"", "port_range = \"443/80\"", 1);
    let (ok, out) = sgd_check(&bad);
    assert!(!ok);
    assert!(out.contains("2 problems"), "{out}");
    // Where the bad policy is: line and column (of its value), from 1.
    let (line, column) = bad
        .lines()
        .enumerate()
        .find_map(|(n, l)| l.find("\"allow\"").map(|col| (n + 1, col + 1)))
        .unwrap();
    assert!(
        out.contains(&format!(
            ":{line}:{column}: security_group[0].ingress[0].policy"
        )),
        "{out}"
    );
    assert!(
        out.contains("security_group[0].ingress[1].port_range"),
        "{out}"
    );
}
