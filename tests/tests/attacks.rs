//! The attacker's view (issue #8): traffic the rules forbid, sent the way
//! that used to slip past the classifier, must not get through.
//!
//! The server is `sg0` (192.0.2.1, 2001:db8::1), the attacker a client
//! (192.0.2.2, 2001:db8::2); only documentation addresses are used.

use std::time::{Duration, Instant};

use sg_tests::*;

// ---------------------------------------------------------------------------
// Session resurrection
// ---------------------------------------------------------------------------

/// Session resurrection: a client the operator cuts off (a priority-1 drop
/// rule for its address, added through the API) keeps its connection busy
/// both ways to bring its session back: it goes on sending, and the server
/// goes on pushing lines to it, which the basic egress default accepts.
/// Nothing of the connection gets through either way, and a new
/// connection is refused by the rule. The ended session used to be
/// forgotten, and the server's next push opened it again.
#[test]
fn session_resurrection() {
    let t = Topology::pair("resurrect").unwrap();
    let (s, attacker) = (t.server(), t.client());
    let pusher = Pusher::start(s, s.v4(7000), Duration::from_millis(100)).unwrap();
    let sgd = enforce(
        s,
        &[Group::new("sg-push").rules([accept_in("tcp", "7000/7000", "0.0.0.0/0").priority(2)])],
    );
    let conn = PushClient::connect(attacker, pusher.addr()).unwrap();
    conn.send(b"hello\n").unwrap();
    assert!(
        conn.wait_for(3, Duration::from_secs(3)),
        "no lines before the rule"
    );

    let attacker_ip = format!("{}/32", attacker.ipv4());
    #[rustfmt::skip]
    sgd.ctl().ok(&[
        "rule", "add", "sg-push", "ingress", "--id", "cut-off", "--policy", "drop",
        "--priority", "1", "--ip-protocol", "all", "--port-range", "-1/-1",
        "--source-cidr-ip", &attacker_ip,
    ]);
    let cut = Instant::now();
    let heard = pusher.heard();
    let later = std::thread::scope(|scope| {
        let talking = scope.spawn(|| {
            for _ in 0..30 {
                let _ = conn.send(b"let me back in\n");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let later = conn.lines_later_than(cut, Duration::from_millis(300), Duration::from_secs(3));
        talking.join().unwrap();
        later
    });
    assert_eq!(later, 0, "the server's lines reached the attacker again");
    assert_eq!(
        pusher.heard(),
        heard,
        "the attacker's bytes reached the server"
    );
    #[rustfmt::skip]
    check(&[probe("a new connection", Tcp(7000), attacker, s.ipv4(), DROPPED)]);
    let sessions = sgd.ctl().ok(&["sessions", "--interface", SERVER_IF]);
    let port = conn.local_addr().port().to_string();
    assert!(
        sessions
            .lines()
            .filter(|l| l.contains(&port))
            .all(|l| l.contains("ended")),
        "{sessions}"
    );
}
