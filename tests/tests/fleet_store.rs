//! The fleet's connection to etcd (issue #12, SPEC §8) against real etcd
//! (Debian `etcd-server`) in namespaces: the first read, edits as
//! transactions checked against a version (one of two concurrent edits
//! wins, the other is a conflict with nothing written), the host record
//! under its lease, outages (edits refused at once, the view resynced
//! after), a compacted history (a full read again), a store replaced
//! (read whole), a three-member cluster losing a member, and two operators
//! editing at once through two hosts' stores (one wins, the other is a
//! conflict and nothing of it stays).
//!
//! Each `Fleet` is started from a thread inside a host namespace on the
//! management bridge; its connection thread inherits that namespace.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sg_daemon::fleet::{
    CommitError, Fleet, FleetEvent, FleetSettings, Key, Layout, SharedView, TlsFiles, Write, record,
};
use sg_tests::{Etcd, Netns};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

type Events = UnboundedReceiver<FleetEvent>;

fn host_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, n)
}

fn fleet_on(
    ns: &Netns,
    endpoints: Vec<String>,
    prefix: &str,
    host_id: &str,
    ttl: u64,
) -> (Fleet, Events) {
    let (tx, rx) = unbounded_channel();
    let settings = FleetSettings {
        endpoints,
        prefix: prefix.into(),
        host_id: host_id.into(),
        tls: None,
        lease_ttl_secs: ttl,
    };
    let fleet = ns
        .run_in(move || Fleet::start(settings, tx))
        .expect("Fleet::start");
    (fleet, rx)
}

/// The first event `pick` accepts, within `limit`.
fn wait_for<T>(
    rx: &mut Events,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&FleetEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(event) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
                seen.push(short(&event));
            }
            Err(_) if Instant::now() > deadline => {
                panic!("no {what} within {limit:?}; events seen: {seen:?}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn short(event: &FleetEvent) -> String {
    match event {
        FleetEvent::View(v) => format!(
            "View(rev {}, version {}, groups {:?}, hosts {:?})",
            v.revision,
            v.version,
            v.groups.keys().collect::<Vec<_>>(),
            v.hosts.keys().collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

fn wait_view(
    rx: &mut Events,
    limit: Duration,
    what: &str,
    ok: impl Fn(&SharedView) -> bool,
) -> SharedView {
    wait_for(rx, limit, what, |e| match e {
        FleetEvent::View(v) if ok(v) => Some(v.clone()),
        _ => None,
    })
}

/// Waits for `Disconnected`; its error.
fn disconnected(rx: &mut Events, limit: Duration) -> String {
    wait_for(rx, limit, "Disconnected", |e| match e {
        FleetEvent::Disconnected { error } => Some(error.clone()),
        _ => None,
    })
}

fn connected(rx: &mut Events, limit: Duration) -> String {
    wait_for(rx, limit, "Connected", |e| match e {
        FleetEvent::Connected { endpoint } => Some(endpoint.clone()),
        _ => None,
    })
}

fn group_key(id: &str) -> String {
    Layout::new("/sg").key(&Key::Group(id.into()))
}

fn group(id: &str, description: &str) -> String {
    format!(r#"{{"id":"{id}","description":"{description}"}}"#)
}

fn put_group(id: &str, description: &str) -> Write {
    Write::Put {
        key: group_key(id),
        value: group(id, description),
    }
}

fn description(view: &SharedView, id: &str) -> Option<String> {
    view.groups.get(id).and_then(|g| g.description.clone())
}

#[test]
fn first_view_commits_conflicts_and_push() {
    let etcd = Etcd::single("fs-commit").unwrap();
    let ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let (fleet, mut rx) = fleet_on(&ns, etcd.endpoints(), "/sg", "hv-a", 5);

    let first = fleet
        .first_view(Duration::from_secs(5))
        .expect("a first view");
    assert!(first.is_empty() && first.version == 0, "{first:?}");
    assert_eq!(connected(&mut rx, Duration::from_secs(1)), etcd.endpoint(0));

    // A commit comes back as a view at its revision.
    let rev = fleet.commit(0, vec![put_group("sg-web", "v1")]).unwrap();
    let view = wait_view(&mut rx, Duration::from_secs(2), "the commit", |v| {
        v.version == rev
    });
    assert_eq!(description(&view, "sg-web").as_deref(), Some("v1"));
    assert_eq!(view.revision, rev);

    // Two edits on the same base at once: one wins, the other is a
    // conflict and writes nothing.
    let (a, b) = std::thread::scope(|s| {
        let a =
            s.spawn(|| fleet.commit(rev, vec![put_group("sg-web", "a"), put_group("sg-a", "a")]));
        let b =
            s.spawn(|| fleet.commit(rev, vec![put_group("sg-web", "b"), put_group("sg-b", "b")]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (winner, won, lost) = match (&a, &b) {
        (Ok(r), Err(CommitError::Conflict { base, current })) => {
            (*r, "a", ("sg-b", *base, *current))
        }
        (Err(CommitError::Conflict { base, current }), Ok(r)) => {
            (*r, "b", ("sg-a", *base, *current))
        }
        other => panic!("not one winner and one conflict: {other:?}"),
    };
    assert_eq!(
        (lost.1, lost.2),
        (rev, winner),
        "the conflict names both versions"
    );
    assert_eq!(
        etcd.get(&group_key(lost.0)).unwrap(),
        None,
        "nothing of the loser written"
    );
    let view = wait_view(&mut rx, Duration::from_secs(2), "the winner", |v| {
        v.version == winner
    });
    assert_eq!(description(&view, "sg-web").as_deref(), Some(won));
    // A stale base stays a conflict.
    assert!(matches!(
        fleet.commit(rev, vec![put_group("sg-c", "c")]),
        Err(CommitError::Conflict { .. })
    ));

    let status = fleet.status();
    assert!(
        status.connected && status.last_error.is_none(),
        "{status:?}"
    );
    assert_eq!(status.revision, winner);
    assert!(status.store_revision >= winner, "{status:?}");

    // Push: only into a prefix without shared objects.
    assert!(matches!(
        fleet.push(vec![put_group("sg-x", "x")]),
        Err(CommitError::NotEmpty(_))
    ));
    let (other, _orx) = fleet_on(&ns, etcd.endpoints(), "/other", "hv-a", 5);
    other
        .first_view(Duration::from_secs(5))
        .expect("a view of /other");
    let key = Layout::new("/other").key(&Key::Group("sg-x".into()));
    let seed = Write::Put {
        key: key.clone(),
        value: group("sg-x", "x"),
    };
    other.push(vec![seed.clone()]).unwrap();
    match other.push(vec![seed]) {
        Err(CommitError::NotEmpty(what)) => assert!(what.contains("groups/"), "{what}"),
        other => panic!("a second push: {other:?}"),
    }

    // A push larger than one transaction may hold (etcd: 128 operations)
    // goes in batches, and all of it arrives.
    let (big, mut big_rx) = fleet_on(&ns, etcd.endpoints(), "/big", "hv-a", 5);
    big.first_view(Duration::from_secs(5))
        .expect("a view of /big");
    let layout = Layout::new("/big");
    let many: Vec<Write> = (0..250)
        .map(|i| {
            let id = format!("sg-{i:03}");
            Write::Put {
                key: layout.key(&Key::Group(id.clone())),
                value: group(&id, "batched"),
            }
        })
        .collect();
    let revision = big.push(many.clone()).unwrap();
    let view = wait_for(
        &mut big_rx,
        Duration::from_secs(5),
        "the pushed view",
        |e| match e {
            FleetEvent::View(v) if v.revision >= revision => Some(v.clone()),
            _ => None,
        },
    );
    assert_eq!(view.groups.len(), 250);
    assert_eq!(view.version, revision, "the version key comes last");
    assert!(matches!(big.push(many), Err(CommitError::NotEmpty(_))));
}

#[test]
fn host_record_lives_with_its_lease() {
    let etcd = Etcd::single("fs-lease").unwrap();
    let a_ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let b_ns = etcd.mgmt().host("fs-b", host_ip(12)).unwrap();
    let (a, _arx) = fleet_on(&a_ns, etcd.endpoints(), "/sg", "hv-a", 2);
    let vm = |n: u8| {
        (
            format!("vm{n}"),
            vec!["sg-web".to_owned()],
            vec![format!("10.0.0.{n}").parse().unwrap()],
        )
    };
    a.publish(record("hv-a", &[vm(1)]));
    let (b, mut brx) = fleet_on(&b_ns, etcd.endpoints(), "/sg", "hv-b", 2);
    b.first_view(Duration::from_secs(5)).expect("b's view");
    wait_view(&mut brx, Duration::from_secs(3), "hv-a's record", |v| {
        v.hosts.get("hv-a").is_some_and(|h| h.bindings.len() == 1)
    });
    // The latest record wins.
    a.publish(record("hv-a", &[vm(1), vm(2)]));
    wait_view(&mut brx, Duration::from_secs(2), "hv-a's new record", |v| {
        v.hosts.get("hv-a").is_some_and(|h| h.bindings.len() == 2)
    });
    // Kept alive past its TTL.
    std::thread::sleep(Duration::from_secs(3));
    let key = Layout::new("/sg").key(&Key::Host("hv-a".into()));
    assert!(
        etcd.get(&key).unwrap().is_some(),
        "the record outlived its lease's TTL unkept"
    );

    // Gone once nobody keeps the lease alive (no revoke on drop).
    drop(a);
    let dropped = Instant::now();
    wait_view(&mut brx, Duration::from_secs(5), "hv-a gone", |v| {
        !v.hosts.contains_key("hv-a")
    });
    assert!(
        dropped.elapsed() > Duration::from_millis(500),
        "revoked instead of expired?"
    );
    eprintln!(
        "record gone {:?} after the drop (TTL 2 s)",
        dropped.elapsed()
    );
}

#[test]
fn outage_refuses_edits_and_resyncs() {
    let mut etcd = Etcd::single("fs-outage").unwrap();
    let ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let (fleet, mut rx) = fleet_on(&ns, etcd.endpoints(), "/sg", "hv-a", 5);
    fleet.publish(record("hv-a", &[]));
    let view = fleet
        .first_view(Duration::from_secs(5))
        .expect("a first view");
    connected(&mut rx, Duration::from_secs(1));

    etcd.kill(0);
    let killed = Instant::now();
    let error = disconnected(&mut rx, Duration::from_secs(5));
    eprintln!(
        "disconnected {:?} after the kill: {error}",
        killed.elapsed()
    );
    let asked = Instant::now();
    let refused = fleet.commit(view.version, vec![put_group("sg-web", "v1")]);
    assert!(
        matches!(refused, Err(CommitError::Unreachable(_))),
        "{refused:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    let status = fleet.status();
    assert!(
        !status.connected && status.last_error.is_some(),
        "{status:?}"
    );

    // Back, with a change made by another client before the fleet is.
    etcd.restart(0).unwrap();
    etcd.wait_ready(0).unwrap();
    etcd.put(&group_key("sg-db"), &group("sg-db", "meanwhile"))
        .unwrap();
    let back = Instant::now();
    connected(&mut rx, Duration::from_secs(5));
    let view = wait_view(
        &mut rx,
        Duration::from_secs(3),
        "the change made meanwhile",
        |v| description(v, "sg-db").as_deref() == Some("meanwhile"),
    );
    eprintln!("resynced {:?} after etcd answered again", back.elapsed());
    let key = Layout::new("/sg").key(&Key::Host("hv-a".into()));
    assert!(
        etcd.get(&key).unwrap().is_some(),
        "the record is back under the lease"
    );
    fleet
        .commit(view.version, vec![put_group("sg-web", "v1")])
        .unwrap();
}

/// Cuts the host off (no answer at all, not a refused connection: noticed
/// by the unanswered keep-alives), runs `meanwhile`, and reconnects it.
fn cut_off(ns: &Netns, rx: &mut Events, meanwhile: impl FnOnce()) {
    ns.ip(&["link", "set", "mgmt0", "down"]).unwrap();
    let cut = Instant::now();
    wait_for(rx, Duration::from_secs(8), "Disconnected", |e| {
        matches!(e, FleetEvent::Disconnected { .. }).then_some(())
    });
    eprintln!("cut-off noticed after {:?}", cut.elapsed());
    meanwhile();
    ns.ip(&["link", "set", "mgmt0", "up"]).unwrap();
    connected(rx, Duration::from_secs(8));
}

/// etcd rebuilt (or restored from a backup) on the same address: its
/// revisions start over. The host does not wait for revisions the new
/// store may never reach: it reads it whole.
#[test]
fn a_replaced_store_is_read_whole() {
    let mut etcd = Etcd::single("fs-new").unwrap();
    let ns = etcd.mgmt().host("fs-newh", host_ip(13)).unwrap();
    let (fleet, mut rx) = fleet_on(&ns, etcd.endpoints(), "/sg", "hv-a", 5);
    let first = fleet
        .first_view(Duration::from_secs(5))
        .expect("a first view");
    let mut base = first.version;
    for i in 0..5 {
        base = fleet
            .commit(base, vec![put_group("sg-old", &format!("{i}"))])
            .unwrap();
    }
    let old = wait_for(&mut rx, Duration::from_secs(5), "the edits", |e| match e {
        FleetEvent::View(v) if v.revision >= base => Some(v.clone()),
        _ => None,
    });
    etcd.replace_all().unwrap();
    etcd.put(&group_key("sg-new"), &group("sg-new", "after"))
        .unwrap();
    let new = wait_for(
        &mut rx,
        Duration::from_secs(10),
        "the new store",
        |e| match e {
            FleetEvent::View(v) if v.groups.contains_key("sg-new") => Some(v.clone()),
            _ => None,
        },
    );
    assert!(!new.groups.contains_key("sg-old"), "{new:?}");
    assert!(
        new.revision < old.revision,
        "its revisions started over: {new:?}"
    );
    assert_ne!(new.cluster_id, old.cluster_id);
}

#[test]
fn cut_off_host_resumes_its_watch_or_reads_again() {
    let etcd = Etcd::single("fs-cutoff").unwrap();
    let ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let (fleet, mut rx) = fleet_on(&ns, etcd.endpoints(), "/sg", "hv-a", 2);
    fleet.publish(record("hv-a", &[]));
    fleet
        .first_view(Duration::from_secs(5))
        .expect("a first view");
    let rev = fleet
        .commit(0, vec![put_group("sg-a", "1"), put_group("sg-b", "1")])
        .unwrap();
    wait_view(&mut rx, Duration::from_secs(2), "the commit", |v| {
        v.version == rev
    });
    let groups = |v: &SharedView| v.groups.keys().cloned().collect::<Vec<_>>();

    // Changes while cut off: the watch resumes after the last event.
    cut_off(&ns, &mut rx, || {
        etcd.delete(&group_key("sg-a")).unwrap();
        etcd.put(&group_key("sg-b"), &group("sg-b", "2")).unwrap();
    });
    // Its lease ran out meanwhile (TTL 2 s): a new one, the record again.
    let view = wait_view(
        &mut rx,
        Duration::from_secs(3),
        "the changes and the record",
        |v| groups(v) == ["sg-b"] && v.hosts.contains_key("hv-a"),
    );
    assert_eq!(description(&view, "sg-b").as_deref(), Some("2"));

    // And with the history compacted meanwhile: a full read.
    cut_off(&ns, &mut rx, || {
        etcd.put(&group_key("sg-c"), &group("sg-c", "1")).unwrap();
        etcd.compact().unwrap();
    });
    let view = wait_view(
        &mut rx,
        Duration::from_secs(3),
        "the state after compaction",
        |v| groups(v) == ["sg-b", "sg-c"],
    );
    assert_eq!(view.version, rev, "the version key untouched");
    // The watch works again after the full read.
    etcd.put(&group_key("sg-d"), &group("sg-d", "1")).unwrap();
    wait_view(&mut rx, Duration::from_secs(2), "a later change", |v| {
        v.groups.contains_key("sg-d")
    });
}

#[test]
fn three_members_survive_one_killed() {
    let mut etcd = Etcd::cluster("fs-three", 3).unwrap();
    let ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let (fleet, mut rx) = fleet_on(&ns, etcd.endpoints(), "/sg", "hv-a", 5);
    fleet
        .first_view(Duration::from_secs(5))
        .expect("a first view");
    let endpoint = connected(&mut rx, Duration::from_secs(1));
    let rev = fleet.commit(0, vec![put_group("sg-a", "1")]).unwrap();
    wait_view(&mut rx, Duration::from_secs(2), "the commit", |v| {
        v.version == rev
    });

    // Kill the member in use: the fleet moves on to another.
    let used = etcd
        .endpoints()
        .iter()
        .position(|e| *e == endpoint)
        .unwrap();
    etcd.kill(used);
    let killed = Instant::now();
    let rev = loop {
        match fleet.commit(rev, vec![put_group("sg-b", "1")]) {
            Ok(rev) => break rev,
            Err(CommitError::Unreachable(_)) if killed.elapsed() < Duration::from_secs(8) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("after {:?}: {e}", killed.elapsed()),
        }
    };
    eprintln!(
        "commits again {:?} after the member in use was killed",
        killed.elapsed()
    );
    wait_view(&mut rx, Duration::from_secs(2), "the commit", |v| {
        v.version == rev
    });
    // Watches too: a write by another client arrives.
    etcd.put(&group_key("sg-c"), &group("sg-c", "1")).unwrap();
    wait_view(
        &mut rx,
        Duration::from_secs(2),
        "another client's write",
        |v| v.groups.contains_key("sg-c"),
    );

    // The member back, and another one killed: still fine.
    etcd.restart(used).unwrap();
    etcd.wait_ready(used).unwrap();
    etcd.kill((used + 1) % 3);
    etcd.put(&group_key("sg-d"), &group("sg-d", "1")).unwrap();
    wait_view(
        &mut rx,
        Duration::from_secs(8),
        "a write with another member down",
        |v| v.groups.contains_key("sg-d"),
    );
}

#[test]
fn tls_with_a_client_certificate() {
    let etcd = Etcd::single_tls("fs-tls").unwrap();
    let pki = etcd.pki().unwrap();
    let ns = etcd.mgmt().host("fs-a", host_ip(11)).unwrap();
    let start = |identity: Option<(PathBuf, PathBuf)>| {
        let (tx, rx) = unbounded_channel();
        let settings = FleetSettings {
            endpoints: etcd.endpoints(),
            prefix: "/sg".into(),
            host_id: "hv-a".into(),
            tls: Some(TlsFiles {
                ca_file: pki.ca.clone(),
                identity,
            }),
            lease_ttl_secs: 5,
        };
        let fleet = ns.run_in(move || Fleet::start(settings, tx)).unwrap();
        (fleet, rx)
    };
    let (fleet, mut rx) = start(Some(pki.client.clone()));
    fleet
        .first_view(Duration::from_secs(5))
        .expect("a view over TLS");
    assert!(connected(&mut rx, Duration::from_secs(1)).starts_with("https://"));
    let rev = fleet.commit(0, vec![put_group("sg-web", "tls")]).unwrap();
    wait_view(&mut rx, Duration::from_secs(2), "the commit", |v| {
        v.version == rev
    });

    // Without a client certificate etcd refuses: never connected.
    let (anonymous, mut rx) = start(None);
    let error = disconnected(&mut rx, Duration::from_secs(5));
    eprintln!("without a client certificate: {error}");
    assert!(anonymous.first_view(Duration::from_millis(500)).is_none());
    assert!(!anonymous.status().connected);
}

/// Two operators editing at once, each through its own host's daemon
/// (`api::handle_desired` on a fleet host's `Store`, as `sgd` runs it):
/// the second edit was validated against a version the first one moved,
/// so it is a conflict, and nothing of it is written or applied.
#[test]
fn two_operators_editing_at_once_one_wins() {
    use sg_daemon::api::{self, Direction, Reply, Request, Response};
    use sg_daemon::{config::schema, daemon::ApplyReport, store::Store};

    let etcd = Etcd::single("fs-ops").unwrap();
    let ns = etcd.mgmt().host("fs-opsh", host_ip(14)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each host: its file, state directory and connection (no bindings).
    let open = |host: &str| {
        let file = dir.path().join(format!("{host}.toml"));
        std::fs::write(
            &file,
            format!(
                "[daemon]\nstate_dir = {:?}\n\n[datastore]\nkind = \"etcd\"\nendpoints = {:?}\nhost_id = {host:?}\n",
                dir.path().join(host),
                etcd.endpoints()
            ),
        )
        .unwrap();
        let (fleet, rx) = fleet_on(&ns, etcd.endpoints(), "/sg", host, 5);
        let store = Store::open_fleet(&dir.path().join(host), &file, fleet).unwrap();
        (store, rx)
    };
    let (mut a, mut a_rx) = open("hv-a");
    let groups = schema::Document {
        security_group: vec![schema::Group {
            id: "sg-web".into(),
            ..schema::Group::default()
        }],
        ..schema::Document::default()
    };
    a.push(&groups).unwrap();
    let (mut b, _b_rx) = open("hv-b");
    // A sees the pushed group too (its events, as sgd's loop handles them).
    let view = wait_for(&mut a_rx, Duration::from_secs(5), "the push", |e| match e {
        FleetEvent::View(v) if v.groups.contains_key("sg-web") => Some(v.clone()),
        _ => None,
    });
    let mut apply = |_: &sg_daemon::model::Config| Ok(ApplyReport::default());
    a.fleet_view(view, &mut apply);
    assert!(b.document().group("sg-web").is_some() && a.document().group("sg-web").is_some());

    let rule = |port: &str| schema::Rule {
        policy: Some("accept".into()),
        ip_protocol: Some(schema::ProtocolValue::Name("tcp".into())),
        port_range: Some(format!("{port}/{port}")),
        source_cidr_ip: Some("0.0.0.0/0".into()),
        ..schema::Rule::default()
    };
    let add = |port: &str| Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule(port),
    };
    // A's edit lands; B has not seen it yet (its events wait in its queue).
    let Response::Ok(Reply::Done { .. }) = api::handle_desired(&mut a, add("22"), &mut apply)
    else {
        panic!("A's edit failed")
    };
    let before = b.document().clone();
    let mut applied = 0;
    let answer = api::handle_desired(&mut b, add("443"), &mut |_| {
        applied += 1;
        Ok(ApplyReport::default())
    });
    let Response::Error(e) = answer else {
        panic!("B's edit on a stale version was taken: {answer:?}")
    };
    assert!(
        e.contains("conflict") && e.contains("nothing was written"),
        "{e}"
    );
    assert_eq!(b.document(), &before, "B's state is unchanged");
    // B applied its edit, then the rules in force again: nothing of it stays.
    assert_eq!(applied, 2);
    let web = etcd.get(&group_key("sg-web")).unwrap().unwrap();
    assert!(web.contains("22/22") && !web.contains("443/443"), "{web}");
}
