//! Upgrades that change the map layout keep sessions: `sgd` built with the
//! test-only layout (`--features layout-test`: `CtValue` padded, its own
//! `maps-v<n>`; [`layout_test_sgd_path`]) runs first, is stopped the way a
//! restart stops it (pins left), and the normal `sgd` starts on the same
//! pins. The sessions the first opened must carry the traffic that only
//! they admit, and the first's map directory must be gone. A directory of
//! a layout `sgd` cannot read is removed with a warning.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use sg_tests::*;

/// The test layout's `MAP_LAYOUT_VERSION` (sg-common's `TEST_LAYOUT_VERSION`).
const TEST_LAYOUT_DIR: &str = "maps-v9999";

/// HTTP in; nothing else inbound: the return traffic of the server's own
/// connections passes through their sessions alone.
fn web() -> Group {
    Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")])
}

/// The normal sgd's map directory (`maps-v<MAP_LAYOUT_VERSION>`).
fn this_layout_dir(sgd: &Daemon) -> PathBuf {
    sgd.dirs()
        .bpffs_dir()
        .join(format!("maps-v{}", sg_common::MAP_LAYOUT_VERSION))
}

in_each_attach_mode!(a_tcp_connection_survives_an_upgrade_to_another_map_layout);

/// The server connects out to a client that pushes a line every 100 ms,
/// unprompted: the lines come in only through the session (no inbound
/// rule admits them, and the server sends nothing but ACKs, which it
/// sends only for lines that arrive). Across the upgrade they keep
/// coming, and the server's bytes reach the client.
fn a_tcp_connection_survives_an_upgrade_to_another_map_layout(mode: Attach) {
    let t = Topology::pair("upg").unwrap();
    let (s, c) = (t.server(), t.client());
    let rules = mode.config(&groups_on(SERVER_IF, &[web()]));
    let mut sgd = Daemon::start_binary(&layout_test_sgd_path(), s, &rules).unwrap();
    assert!(
        sgd.dirs().bpffs_dir().join(TEST_LAYOUT_DIR).is_dir(),
        "the test-layout sgd pins its maps in {TEST_LAYOUT_DIR}"
    );
    let pusher = Pusher::start(c, c.v4(7000), Duration::from_millis(100)).unwrap();
    let conn = PushClient::connect(s, pusher.addr()).unwrap();
    assert!(
        conn.wait_for(3, Duration::from_secs(5)),
        "no lines before the upgrade"
    );

    sgd.stop().unwrap();
    // Down: the pinned program and its session tables carry the lines.
    std::thread::sleep(Duration::from_millis(300));
    sgd.restart(s, &rules).unwrap();
    mode.check_log(&sgd).unwrap();
    let upgraded = conn.lines();

    assert!(
        conn.wait_for(upgraded + 10, Duration::from_secs(5)),
        "the pushed lines stopped at the upgrade ({} after it); log:\n{}",
        conn.lines() - upgraded,
        sgd.log()
    );
    let heard = pusher.heard();
    conn.send(b"and back\n").unwrap();
    let back = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        pusher.heard() > heard
    });
    assert!(
        back,
        "the server's bytes did not reach the client after the upgrade"
    );
    assert!(
        conn.wait_for(conn.lines() + 3, Duration::from_secs(5)),
        "the connection broke after the server spoke"
    );

    assert!(
        !sgd.dirs().bpffs_dir().join(TEST_LAYOUT_DIR).exists(),
        "the earlier layout's maps were not removed"
    );
    assert!(this_layout_dir(&sgd).is_dir());
    assert!(sgd.log().contains("sessions migrated"), "{}", sgd.log());
    let sessions = sgd.ctl().ok(&["sessions", "--interface", SERVER_IF]);
    let port = conn.local_addr().port().to_string();
    assert!(
        sessions
            .lines()
            .any(|l| l.contains(&port) && l.contains("established")),
        "{sessions}"
    );
}

/// A UDP flow the server opened, and that has had no answer yet (it is in
/// the unanswered table), is answered after the upgrade: the answer
/// passes through the migrated session alone.
#[test]
fn an_unanswered_udp_session_is_answered_after_an_upgrade() {
    let t = Topology::pair("upu").unwrap();
    let (s, c) = (t.server(), t.client());
    let rules = groups_on(SERVER_IF, &[web()]);
    let mut sgd = Daemon::start_binary(&layout_test_sgd_path(), s, &rules).unwrap();
    let (server, client) = (
        UdpSink::start(s, s.v4(5000)).unwrap(),
        UdpSink::start(c, c.v4(6000)).unwrap(),
    );
    server.send_to(client.addr(), b"question").unwrap();
    assert_eq!(client.wait_for(1, Duration::from_secs(2)).len(), 1);

    sgd.restart(s, &rules).unwrap();
    client.send_to(server.addr(), b"answer").unwrap();
    let got = server.wait_for(1, Duration::from_secs(2));
    assert_eq!(got.len(), 1, "the answer was dropped; log:\n{}", sgd.log());
    assert!(!sgd.dirs().bpffs_dir().join(TEST_LAYOUT_DIR).exists());
}

/// Maps of a layout this sgd cannot read (here a made-up one, as a newer
/// sgd's would be after a downgrade) are removed, with a warning: a later
/// upgrade to that layout must not adopt them, stale.
#[test]
fn maps_of_a_layout_sgd_cannot_read_are_removed_with_a_warning() {
    let t = Topology::pair("upx").unwrap();
    let s = t.server();
    let rules = groups_on(SERVER_IF, &[web()]);
    let mut sgd = Daemon::start(s, &rules).unwrap();
    sgd.stop().unwrap();
    let unknown = sgd.dirs().bpffs_dir().join("maps-v7777");
    std::fs::create_dir(&unknown).unwrap();

    sgd.restart(s, &rules).unwrap();
    assert!(!unknown.exists(), "{} is still there", unknown.display());
    assert!(this_layout_dir(&sgd).is_dir());
    let log = sgd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("cannot read") && l.contains("maps-v7777")),
        "{log}"
    );
}

/// New session tables smaller than the earlier ones' sessions keep the
/// most recent: 1500 flows the server opened, then one more (the last),
/// all unanswered (a table of 2048 at `session_table_size = 8192`), into
/// tables of 1024. The log says how many were left behind, and the last
/// flow's answer passes.
#[test]
fn smaller_tables_keep_the_most_recent_sessions() {
    let t = Topology::pair("ups").unwrap();
    let (s, c) = (t.server(), t.client());
    let rules = |size: u32| {
        format!(
            "session_table_size = {size}\n{}",
            groups_on(SERVER_IF, &[web()])
        )
    };
    let mut sgd = Daemon::start_binary(&layout_test_sgd_path(), s, &rules(8192)).unwrap();
    let sent = udp_flood(s, c.ipv4().into(), 20000..21500, 1).unwrap();
    assert_eq!(sent, 1500);
    let (server, client) = (
        UdpSink::start(s, s.v4(5000)).unwrap(),
        UdpSink::start(c, c.v4(6000)).unwrap(),
    );
    server.send_to(client.addr(), b"last").unwrap();
    assert_eq!(client.wait_for(1, Duration::from_secs(2)).len(), 1);

    sgd.restart(s, &rules(1024)).unwrap();
    let log = sgd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("cannot hold") && l.contains("left_behind=")),
        "{log}"
    );
    client.send_to(server.addr(), b"answer").unwrap();
    assert_eq!(
        server.wait_for(1, Duration::from_secs(2)).len(),
        1,
        "the most recent session was not kept; log:\n{log}"
    );
}

/// The server opens a new UDP flow every millisecond all through the
/// upgrade; afterwards the client answers each of them, and every answer
/// passes. The flows opened between the new sgd's first copy and its
/// switch are only in the earlier tables until its second copy.
#[test]
fn flows_opened_during_the_upgrade_are_kept() {
    let t = Topology::pair("upw").unwrap();
    let (s, c) = (t.server(), t.client());
    let rules = groups_on(SERVER_IF, &[web()]);
    let mut sgd = Daemon::start_binary(&layout_test_sgd_path(), s, &rules).unwrap();
    let server = UdpSink::start(s, s.v4(5000)).unwrap();
    const FIRST_PORT: u16 = 30000;
    let stop = AtomicBool::new(false);
    let opened = thread::scope(|scope| {
        let opener = scope.spawn(|| {
            let mut n = 0u16;
            while !stop.load(Ordering::SeqCst) && n < 30000 {
                server.send_to(c.v4(FIRST_PORT + n), b"new flow").unwrap();
                n += 1;
                thread::sleep(Duration::from_millis(1));
            }
            n
        });
        thread::sleep(Duration::from_millis(100));
        let upgraded = sgd.restart(s, &rules);
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        upgraded.unwrap();
        opener.join().unwrap()
    });
    for n in 0..opened {
        udp_send(c, Some(c.v4(FIRST_PORT + n)), server.addr(), b"answer").unwrap();
    }
    let got = server.wait_for(opened.into(), Duration::from_secs(5));
    let missing: Vec<u16> = (0..opened)
        .map(|n| FIRST_PORT + n)
        .filter(|port| !got.iter().any(|(from, _)| from.port() == *port))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {opened} flows lost their session at the upgrade (client ports {missing:?}); log:\n{}",
        missing.len(),
        sgd.log()
    );
}
