//! Tests of the harness itself, without sgd (a stand-in plays the daemon).
//! They need root, iproute2 and iputils-ping.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use sg_tests::*;

/// Whether `ip netns list` shows `name`.
fn netns_exists(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// Makes `ns` drop everything it would send to `dst`, the way a firewall
/// that drops the answers would (this kernel may lack tc classifiers, and
/// a route needs none).
fn blackhole(ns: &Netns, dst: &str) {
    ns.ip(&["route", "add", "blackhole", dst]).unwrap();
}

#[test]
fn tcp_connects_and_echoes_over_a_pair() {
    let t = Topology::pair("tcp").unwrap();
    let _v4 = TcpServer::start(t.server(), t.server().v4(8080)).unwrap();
    let _v6 = TcpServer::start(t.server(), t.server().v6(8080)).unwrap();

    assert_tcp_allowed(t.client(), t.server().v4(8080));
    assert_tcp_allowed(t.client(), t.server().v6(8080));
    tcp_echo(t.client(), t.server().v4(8080), b"hello v4").unwrap();
    tcp_echo(t.client(), t.server().v6(8080), b"hello v6").unwrap();

    // A chosen source port, and a connection that keeps working.
    let src = t.client().v4(40123);
    let mut conn =
        TcpConn::open(t.client(), Some(src), t.server().v4(8080), DEFAULT_TIMEOUT).unwrap();
    assert_eq!(conn.local_addr(), src);
    conn.echo(b"one").unwrap();
    conn.echo(&[7u8; 100_000]).unwrap();
}

#[test]
fn closed_port_is_refused_and_foreign_source_fails() {
    let t = Topology::pair("refused").unwrap();
    assert_eq!(
        tcp_connect(t.client(), t.server().v4(9), DEFAULT_TIMEOUT),
        Outcome::Refused
    );
    assert_eq!(
        tcp_connect(t.client(), t.server().v6(9), DEFAULT_TIMEOUT),
        Outcome::Refused
    );
    // The server's address is not the client's to send from.
    let got = tcp_connect_from(
        t.client(),
        Some(t.server().v4(0)),
        t.server().v4(9),
        DEFAULT_TIMEOUT,
    );
    assert!(matches!(got, Outcome::Failed(_)), "{got:?}");
}

#[test]
fn dropped_answers_look_blocked() {
    let t = Topology::pair("dropped").unwrap();
    let _tcp = TcpServer::start(t.server(), t.server().v4(80)).unwrap();
    let _udp = UdpServer::start(t.server(), t.server().v6(53)).unwrap();
    blackhole(t.server(), "192.0.2.2/32");
    blackhole(t.server(), "2001:db8::2/128");

    let start = Instant::now();
    assert_tcp_blocked(t.client(), t.server().v4(80));
    assert!(start.elapsed() < DEFAULT_TIMEOUT + Duration::from_millis(500));
    assert_eq!(
        tcp_connect(t.client(), t.server().v4(81), DEFAULT_TIMEOUT),
        Outcome::TimedOut
    );
    assert_udp(t.client(), t.server().v6(53), false);
    assert_ping(t.client(), t.server().ipv4().into(), false);
    assert_ping(t.client(), t.server().ipv6().into(), false);
    // Nothing is in the way from the server's side of the route.
    assert!(ping(
        t.server(),
        "192.0.2.1".parse().unwrap(),
        DEFAULT_TIMEOUT
    ));
}

#[test]
#[should_panic(expected = "expected blocked (TimedOut), got Refused")]
fn assertions_name_what_they_expected() {
    let t = Topology::pair("message").unwrap();
    assert_tcp_blocked(t.client(), t.server().v4(9));
}

#[test]
fn a_table_names_the_rows_that_failed() {
    let t = Topology::pair("rows").unwrap();
    let (s, c) = (t.server(), t.client());
    let failed = std::panic::catch_unwind(|| {
        check(&[
            probe("answered ping", Ping, c, s.ipv4(), PASS),
            probe("closed port", Tcp(9), c, s.ipv4(), DROPPED),
        ])
    })
    .expect_err("a row with another outcome than expected fails the table");
    let message = failed.downcast_ref::<String>().unwrap();
    assert!(message.starts_with("1 of 2 rows failed:"), "{message}");
    assert!(
        message.contains(&format!(
            "\"closed port\": tcp/9 from netns {} to 192.0.2.1: expected DROPPED, got neither \
             (Refused)",
            c.name()
        )),
        "{message}"
    );
    assert!(!message.contains("answered ping"), "{message}");
}

#[test]
fn udp_echo_and_sink() {
    let t = Topology::pair("udp").unwrap();
    let _v4 = UdpServer::start(t.server(), t.server().v4(5353)).unwrap();
    let _v6 = UdpServer::start(t.server(), t.server().v6(5353)).unwrap();
    assert_udp(t.client(), t.server().v4(5353), true);
    assert_udp(t.client(), t.server().v6(5353), true);
    assert!(udp_request(
        t.client(),
        Some(t.client().v6(4444)),
        t.server().v6(5353),
        DEFAULT_TIMEOUT
    ));
    assert!(!udp_request(
        t.client(),
        None,
        t.server().v4(5354),
        Duration::from_millis(200)
    ));

    let sink = UdpSink::start(t.client(), t.client().v4(6000)).unwrap();
    assert!(sink.wait_for(1, Duration::from_millis(100)).is_empty());
    udp_send(
        t.server(),
        Some(t.server().v4(7000)),
        sink.addr(),
        b"unsolicited",
    )
    .unwrap();
    let got = sink.wait_for(1, DEFAULT_TIMEOUT);
    assert_eq!(got, vec![(t.server().v4(7000), b"unsolicited".to_vec())]);

    // The sink's socket as the client of a session: the echo comes back to it.
    sink.send_to(t.server().v4(5353), b"question").unwrap();
    let got = sink.wait_for(2, DEFAULT_TIMEOUT);
    assert_eq!(got[1], (t.server().v4(5353), b"question".to_vec()));
    assert_eq!(sink.received().len(), 2);
}

#[test]
fn ping_v4_and_v6() {
    let t = Topology::pair("ping").unwrap();
    assert_ping(t.client(), t.server().ipv4().into(), true);
    assert_ping(t.client(), t.server().ipv6().into(), true);
    assert_ping(t.server(), t.client().ipv6().into(), true);
    // An address nobody on the segment has.
    assert!(!ping(
        t.client(),
        "192.0.2.99".parse().unwrap(),
        Duration::from_millis(300)
    ));
}

#[test]
fn lan_puts_clients_on_the_server_segment() {
    let t = Topology::lan("lan", 2).unwrap();
    assert_eq!(t.clients().len(), 2);
    assert_eq!(t.client2().ipv4().to_string(), "192.0.2.3");
    assert_eq!(t.client2().ipv6().to_string(), "2001:db8::3");
    assert_eq!(
        (t.server().ifname(), t.client2().ifname()),
        (SERVER_IF, CLIENT_IF)
    );

    let _srv = TcpServer::start(t.server(), t.server().v6(443)).unwrap();
    let _c1 = TcpServer::start(t.client(), SocketAddr::new(t.client().ipv4().into(), 22)).unwrap();
    for client in t.clients() {
        assert_tcp_allowed(client, t.server().v6(443));
        assert_ping(client, t.server().ipv4().into(), true);
    }
    assert_tcp_allowed(t.client2(), t.client().v4(22));
}

#[test]
fn netns_is_deleted_on_drop_and_on_panic() {
    let ns = Netns::new("drop").unwrap();
    let name = ns.name().to_owned();
    assert!(netns_exists(&name));
    assert_eq!(
        ns.exec(&["ip", "-o", "link", "show", "lo"])
            .map(|o| o.contains("UP"))
            .ok(),
        Some(true)
    );
    drop(ns);
    assert!(!netns_exists(&name));

    let mut name = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("panic").unwrap();
        name = ns.name().to_owned();
        ns.run_in(|| panic!("on purpose, in the namespace"));
    }));
    assert!(result.is_err());
    assert!(!name.is_empty() && !netns_exists(&name));
}

#[test]
fn run_in_creates_sockets_in_the_namespace() {
    let t = Topology::pair("runin").unwrap();
    let server_addr = t.server().v4(0);
    assert!(
        t.server()
            .run_in(|| std::net::TcpListener::bind(server_addr))
            .is_ok()
    );
    // The client namespace does not have the server's address.
    assert!(
        t.client()
            .run_in(|| std::net::TcpListener::bind(server_addr))
            .is_err()
    );
}

#[test]
fn topologies_built_concurrently_do_not_collide() {
    let names: Vec<Vec<String>> = thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let t = Topology::pair("par").unwrap();
                    let _srv = TcpServer::start(t.server(), t.server().v4(80)).unwrap();
                    tcp_echo(t.client(), t.server().v4(80), b"mine").unwrap();
                    vec![t.server().name().to_owned(), t.client().name().to_owned()]
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = names.iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|n| !netns_exists(n)));
}

#[test]
fn veth_pair_rejects_long_interface_names() {
    let (a, b) = (Netns::new("long-a").unwrap(), Netns::new("long-b").unwrap());
    let err = veth_pair(&a, "a-very-long-name0", &[], &b, "b0", &[]).unwrap_err();
    assert!(err.to_string().contains("1..=15 characters"), "{err}");
}

const FAKE_SGD: &str = env!("CARGO_BIN_EXE_fake-sgd");

#[test]
fn sgd_runs_reloads_and_stops_in_the_namespace() {
    let ns = Netns::new("sgd").unwrap();
    let mut sgd = Sgd::start_binary(Path::new(FAKE_SGD), &ns, "# v1\n").unwrap();
    let members = std::process::Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .unwrap();
    let pid = sgd.pid().to_string();
    assert!(
        String::from_utf8_lossy(&members.stdout)
            .split_whitespace()
            .any(|p| p == pid)
    );
    assert!(sgd.log().contains("started with"), "{}", sgd.log());

    sgd.write_config("# v2\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(sgd.config_path()).unwrap(),
        "# v2\n"
    );
    sgd.reload().unwrap();
    sgd.reload().unwrap();
    assert_eq!(sgd.log().matches("reloaded").count(), 2);

    assert!(sgd.stop().unwrap().success());
    assert!(sgd.log().contains("stopping"));
}

#[test]
fn sgd_start_reports_an_early_exit_with_its_log() {
    let ns = Netns::new("sgd-fail").unwrap();
    let err =
        Sgd::start_binary(Path::new(FAKE_SGD), &ns, "exit_before_ready = true\n").unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("exited") && err.contains("told to exit before ready"),
        "{err}"
    );
}

#[test]
fn daemon_dirs_mount_a_private_bpffs() {
    let dirs = DaemonDirs::new().unwrap();
    let bpffs = dirs.bpffs_dir();
    let mounted = |p: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.contains(&format!(" {} ", p.display())) && l.contains(" - bpf "))
    };
    assert!(mounted(&bpffs));
    assert!(dirs.state_dir().is_dir() && dirs.runtime_dir().is_dir());
    let config = dirs.config("block_smtp_egress = false\n");
    assert!(config.starts_with("[daemon]\nstate_dir = \"/"));
    assert!(config.ends_with("\"\nblock_smtp_egress = false\n"));
    drop(dirs);
    assert!(!mounted(&bpffs) && !bpffs.exists());
}
