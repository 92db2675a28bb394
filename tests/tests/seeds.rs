//! The seeds' scenarios (seeds/001, 003) with real traffic: `sgd` runs in
//! the server's namespace and enforces on its veth; clients probe it the way
//! Neutron's connection tester does. Blocked means dropped, so a blocked
//! TCP connect times out rather than being refused.

use std::time::Duration;

use sg_tests::*;

/// The seeds' web server: HTTP and HTTPS open to everyone, v4 and v6.
const WEB: &str = r#"
[[security_group]]
id = "sg-web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "443/443"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "::/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "443/443"
  source_cidr_ip = "::/0"
[[interface]]
name = "sg0"
security_groups = ["sg-web"]
"#;

#[test]
fn web_server_opens_80_and_443_and_nothing_else() {
    let t = Topology::pair("web").unwrap();
    let s = t.server();
    let servers: Vec<_> = [80, 443, 22]
        .into_iter()
        .flat_map(|p| [s.v4(p), s.v6(p)])
        .map(|addr| TcpServer::start(s, addr).unwrap())
        .collect();
    // Before enforcement everything is reachable (the harness is sound).
    assert_tcp_allowed(t.client(), s.v4(22));
    assert_ping(t.client(), s.ipv4().into(), true);

    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(s, &dirs.config(WEB)).unwrap();
    for port in [80, 443] {
        assert_tcp_allowed(t.client(), s.v4(port));
        assert_tcp_allowed(t.client(), s.v6(port));
        tcp_echo(t.client(), s.v4(port), b"GET / HTTP/1.0\r\n\r\n").unwrap();
    }
    assert_tcp_blocked(t.client(), s.v4(22));
    assert_tcp_blocked(t.client(), s.v6(22));
    assert_ping(t.client(), s.ipv4().into(), false);
    assert_ping(t.client(), s.ipv6().into(), false);
    drop(servers);
}

#[test]
fn ssh_from_one_client_address_only() {
    let t = Topology::lan("ssh", 2).unwrap();
    let s = t.server();
    let _ssh = TcpServer::start(s, s.v4(22)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-admin"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "{}"
[[interface]]
name = "sg0"
security_groups = ["sg-admin"]
"#,
        t.client().ipv4()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_allowed(t.client(), s.v4(22));
    assert_tcp_blocked(t.client2(), s.v4(22));
}

#[test]
fn outbound_connections_and_their_replies_pass() {
    let t = Topology::pair("out").unwrap();
    let s = t.server();
    let c = t.client();
    let _remote = TcpServer::start(c, c.v4(8080)).unwrap();
    let _remote6 = TcpServer::start(c, c.v6(8080)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(s, &dirs.config(WEB)).unwrap();

    // No inbound rule covers the client's replies; the session does.
    tcp_echo(s, c.v4(8080), b"hello over v4").unwrap();
    tcp_echo(s, c.v6(8080), b"hello over v6").unwrap();
    assert_ping(s, c.ipv4().into(), true);
    assert_ping(s, c.ipv6().into(), true);
    // The client cannot open the same port towards the server.
    let _inbound = TcpServer::start(s, s.v4(8080)).unwrap();
    assert_tcp_blocked(c, s.v4(8080));
}

#[test]
fn unsolicited_udp_is_dropped_and_replies_are_delivered() {
    let t = Topology::pair("udp").unwrap();
    let s = t.server();
    let c = t.client();
    let sink = UdpSink::start(s, s.v4(5353)).unwrap();
    let _echo = UdpServer::start(c, c.v4(5353)).unwrap();
    let _echo6 = UdpServer::start(c, c.v6(5353)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(s, &dirs.config(WEB)).unwrap();

    udp_send(c, None, s.v4(5353), b"unsolicited").unwrap();
    assert!(
        sink.wait_for(1, Duration::from_millis(500)).is_empty(),
        "an unsolicited datagram reached the server"
    );
    assert_udp(s, c.v4(5353), true);
    assert_udp(s, c.v6(5353), true);
    // Sent from the server's sink socket, the reply comes back to it.
    sink.send_to(c.v4(5353), b"question").unwrap();
    assert_eq!(sink.wait_for(1, Duration::from_secs(2)).len(), 1);
}

#[test]
fn sighup_applies_a_new_file_and_keeps_the_old_rules_on_a_bad_one() {
    let t = Topology::pair("hup").unwrap();
    let s = t.server();
    let _ssh = TcpServer::start(s, s.v4(22)).unwrap();
    let _web = TcpServer::start(s, s.v4(80)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let mut sgd = Sgd::start(s, &dirs.config(WEB)).unwrap();
    assert_tcp_blocked(t.client(), s.v4(22));

    let with_ssh = WEB.replace(
        "\"80/80\"\n  source_cidr_ip = \"0.0.0.0/0\"",
        "\"22/22\"\n  source_cidr_ip = \"0.0.0.0/0\"",
    );
    sgd.write_config(&dirs.config(&with_ssh)).unwrap();
    sgd.reload().unwrap();
    assert_tcp_allowed(t.client(), s.v4(22));
    assert_tcp_blocked(t.client(), s.v4(80));

    sgd.write_config(&dirs.config(&with_ssh.replace("policy = \"accept\"", "policy = \"allow\"")))
        .unwrap();
    sgd.reload().unwrap();
    assert!(sgd.log().contains("reload refused"), "{}", sgd.log());
    assert_tcp_allowed(t.client(), s.v4(22));
    assert_tcp_blocked(t.client(), s.v4(80));
}

#[test]
fn check_reports_every_problem_and_changes_nothing() {
    let (ok, out) = sgd_check(WEB);
    assert!(ok, "{out}");
    let bad = WEB
        .replacen("policy = \"accept\"", "policy = \"allow\"", 1)
        .replacen("port_range = \"443/443\"", "port_range = \"443/80\"", 1);
    let (ok, out) = sgd_check(&bad);
    assert!(!ok);
    assert!(out.contains("2 problems"), "{out}");
    assert!(
        out.contains(":5:12: security_group[0].ingress[0].policy"),
        "{out}"
    );
    assert!(
        out.contains("security_group[0].ingress[1].port_range"),
        "{out}"
    );
}
