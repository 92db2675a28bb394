//! The daemon's life around enforcement: the pinned programs keep the last
//! ruleset enforced while `sgd` is down, a restart (graceful or `kill -9`)
//! takes over sessions and links without a gap, and `sgd --detach` takes
//! sg off for good.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use sg_tests::*;

const WEB: &str = r#"
[[security_group]]
id = "sg-web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
[[interface]]
name = "sg0"
security_groups = ["sg-web"]
"#;

#[test]
fn enforcement_outlives_sgd_and_detach_takes_it_off() {
    let t = Topology::pair("life").unwrap();
    let s = t.server();
    let _ssh = TcpServer::start(s, s.v4(22)).unwrap();
    let _web = TcpServer::start(s, s.v4(80)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let config = dirs.config(WEB);
    let mut sgd = Sgd::start(s, &config).unwrap();
    assert_tcp_blocked(t.client(), s.v4(22));
    sgd.stop().unwrap();
    // Down, but the pinned program still enforces the last rules.
    assert_tcp_blocked(t.client(), s.v4(22));
    assert_tcp_allowed(t.client(), s.v4(80));

    let out = Command::new("ip")
        .args(["netns", "exec", s.name()])
        .arg(sgd_path())
        .args(["--config", &sgd.config_path().to_string_lossy(), "--detach"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The kernel frees an unpinned link shortly after, not at once.
    let open = (0..30).any(|_| {
        tcp_connect(t.client(), s.v4(22), Duration::from_millis(100)) == Outcome::Connected
    });
    assert!(open, "port 22 still blocked after sgd --detach");
}

#[test]
fn a_connection_survives_five_restarts_and_a_blocked_port_stays_blocked() {
    let t = Topology::pair("rst").unwrap();
    let s = t.server();
    let _web = TcpServer::start(s, s.v4(80)).unwrap();
    let _ssh = TcpServer::start(s, s.v4(22)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let config = dirs.config(WEB);
    let mut sgd = Sgd::start(s, &config).unwrap();

    // Data flows continuously over one connection while sgd restarts.
    let mut conn = TcpConn::open(t.client(), None, s.v4(80), Duration::from_secs(2)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicUsize::new(0));
    let pump = {
        let (stop, echoes) = (stop.clone(), echoes.clone());
        thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::SeqCst) {
                conn.echo(b"still here")?;
                echoes.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    };

    for round in 0..5 {
        let before = echoes.load(Ordering::SeqCst);
        if round % 2 == 0 {
            sgd.stop().unwrap();
        } else {
            nix::sys::signal::kill(Pid::from_raw(sgd.pid() as i32), Signal::SIGKILL).unwrap();
            sgd.stop().unwrap(); // reaps it
        }
        assert_tcp_blocked(t.client(), s.v4(22));
        sgd = Sgd::start(s, &config).unwrap();
        assert_tcp_blocked(t.client(), s.v4(22));
        assert!(
            echoes.load(Ordering::SeqCst) > before,
            "no data went through during restart {round}"
        );
        assert!(
            !pump.is_finished(),
            "the connection failed during restart {round}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    pump.join()
        .unwrap()
        .expect("every echo came back over the same connection");
    assert!(sgd.log().contains("enforced"), "{}", sgd.log());
}

#[test]
fn an_interface_that_appears_later_is_enforced_within_a_second() {
    let t = Topology::pair("hot").unwrap();
    let (s, c) = (t.server(), t.client());
    let dirs = DaemonDirs::new().unwrap();
    let config = dirs.config(&WEB.replace(
        "[\"sg-web\"]",
        "[\"sg-web\"]\n[[interface]]\nname = \"hp0\"\nsecurity_groups = [\"sg-web\"]",
    ));
    let sgd = Sgd::start(s, &config).unwrap();
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
    let _ssh = TcpServer::start(s, "198.51.100.1:22".parse().unwrap()).unwrap();
    let _web = TcpServer::start(s, "198.51.100.1:80".parse().unwrap()).unwrap();
    thread::sleep(Duration::from_secs(1));
    assert_tcp_blocked(c, "198.51.100.1:22".parse().unwrap());
    assert_tcp_allowed(c, "198.51.100.1:80".parse().unwrap());
    assert!(sgd.log().contains("interfaces changed"), "{}", sgd.log());
}

#[test]
fn counters_name_the_rule_that_dropped_a_connection() {
    let t = Topology::pair("ctr").unwrap();
    let s = t.server();
    let _ssh = TcpServer::start(s, s.v4(22)).unwrap();
    let dirs = DaemonDirs::new().unwrap();
    let with_drop = WEB.replace(
        "[[interface]]",
        "  [[security_group.ingress]]\n  id = \"no-ssh\"\n  policy = \"drop\"\n  ip_protocol = \"tcp\"\n  port_range = \"22/22\"\n  source_cidr_ip = \"0.0.0.0/0\"\n[[interface]]",
    );
    let config = dirs.config(&format!(
        "metrics_address = \"127.0.0.1:9630\"\n{with_drop}"
    ));
    let _sgd = Sgd::start(s, &config).unwrap();
    assert_tcp_blocked(t.client(), s.v4(22));

    // The drop records name the rule too (`sgctl drops`).
    let out = Command::new(sgd_path().with_file_name("sgctl"))
        .arg("--socket")
        .arg(dirs.runtime_dir().join("sgd.sock"))
        .args(["drops", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drops = String::from_utf8_lossy(&out.stdout);
    assert!(
        drops.contains("\"dst_port\": 22")
            && drops.contains("\"reason\": \"rule-drop\"")
            && drops.contains("\"rule\": \"sg-web/no-ssh\""),
        "{drops}"
    );

    let metrics = s.run_in(|| -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect("127.0.0.1:9630")?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: sg\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    });
    let metrics = metrics.unwrap();
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
