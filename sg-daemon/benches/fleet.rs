//! `cargo xtask bench --fleet` (as root; it creates namespaces and starts
//! etcd), or `cargo bench -p sg-daemon --bench fleet -- [N...] [--rounds R]`.
//!
//! A benchmark, not a test: how long one shared-rule edit takes to reach
//! the compiled tables of every host of a fleet (SPEC §8, issue #12).
//!
//! - etcd (Debian `etcd-server`, one member) runs in a namespace of its
//!   own on a management bridge (`sg_tests::Etcd`, 198.51.100.250);
//! - the hosts are simulated, all in one more namespace on that bridge
//!   (they only need to reach etcd): each has its own [`Fleet`] connection
//!   (its own thread and runtime, its own watch and lease), its own
//!   [`Store::open_fleet`] on a temporary state directory with a host file
//!   binding `vm<i>` (hypervisor mode, one address, need not exist) to the
//!   shared group, and its own thread doing what `sgd`'s main loop does
//!   with a [`FleetEvent::View`] up to the kernel: `store.fleet_view`,
//!   then `resolve_addresses` and `CompileCache::compile_all` (as
//!   `Daemon::apply` does before it touches the kernel), then
//!   `publish_bindings`. Nothing is attached or installed;
//! - one more host (no bindings) is the editor: what `sgctl rule add` /
//!   `rule delete` does through its `sgd` (the document edited, validated,
//!   completed, then `Store::commit`, an etcd transaction checked against
//!   the revision it was validated at).
//!
//! Each round adds a marker rule to the shared group (or removes the one
//! the round before added); propagation is the time from just before the
//! commit to the instant a host's compile of a config holding the change
//! returned. For each N: p50/p99/max over every host and round, the
//! slowest host per round, and the per-host cost of one change (wall
//! and thread CPU time of the host's handling, and the process's CPU time
//! over the rounds per host and change, which includes the connections'
//! decoding of the watch).
//!
//! Arguments: host counts (default 10 100), `--rounds R` (20),
//! `--fixed-table` (no rule from a group and intra-group drop: the same
//! tables at every N, so that what grows with N is the fleet's part
//! alone), `--serial` (one host handles an event at a time: CPU times
//! without 100 threads sharing the caches, wall times much longer).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sg_daemon::{
    compiled::CompileCache,
    config::schema::{Document, Group, ProtocolValue, Rule},
    daemon::{ApplyReport, resolve_addresses},
    fleet::{Fleet, FleetEvent, FleetSettings},
    model::Config,
    store::Store,
};
use sg_tests::{Etcd, Netns};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// The shared group every simulated host binds.
const GROUP: &str = "sg-shared";
/// The marker rules' source: only the rounds' rules have it.
const MARK_CIDR: &str = "203.0.113.0/24";
/// The hosts' namespace's address on the management bridge.
const HOSTS_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// How long one round may take before its missing hosts are reported.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// What a host's thread reports after each compile.
struct Report {
    host: usize,
    /// When the compile returned.
    at: Instant,
    /// The marker rule's port in the compiled config, if any.
    mark: Option<u16>,
    /// Other hosts' instances in the shared group.
    members: usize,
    /// `fleet_view` + resolve + compile + publish: wall and thread CPU.
    wall: Duration,
    cpu: Duration,
    /// Of which `fleet_view` (composing and validating the document, and
    /// keeping the view for a start without etcd): wall and thread CPU.
    view_wall: Duration,
    view_cpu: Duration,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank percentile of sorted `v`.
fn pct(v: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The marker rule's port in `doc`'s shared group.
fn mark(doc: &Document) -> Option<u16> {
    let group = doc.security_group.iter().find(|g| g.id == GROUP)?;
    let rule = (group.ingress.iter()).find(|r| r.source_cidr_ip.as_deref() == Some(MARK_CIDR))?;
    let range = rule.port_range.as_deref()?;
    range.split('/').next()?.parse().ok()
}

fn tcp_rule(port: u16, source: &str) -> Rule {
    Rule {
        policy: Some("accept".into()),
        ip_protocol: Some(ProtocolValue::Name("tcp".into())),
        port_range: Some(format!("{port}/{port}")),
        source_cidr_ip: Some(source.into()),
        ..Rule::default()
    }
}

/// The shared state seeded into the prefix: the shared group, 20 inbound
/// rules from addresses and one from the group itself (so its members,
/// every host's instance, are in every table, as they are by the basic
/// group's default intra-group accept), and an outbound rule. Without
/// `member_rule` (`--fixed-table`): neither, so the tables are the same
/// at every N.
fn seed(member_rule: bool) -> Document {
    let mut ingress: Vec<Rule> = (0..20)
        .map(|i| tcp_rule(8000 + i, &format!("192.0.2.{}/32", i + 1)))
        .collect();
    ingress.extend(member_rule.then(|| Rule {
        policy: Some("accept".into()),
        ip_protocol: Some(ProtocolValue::Name("tcp".into())),
        port_range: Some("5432/5432".into()),
        source_group_id: Some(GROUP.into()),
        ..Rule::default()
    }));
    Document {
        security_group: vec![Group {
            id: GROUP.into(),
            // A basic group admits its own members by default.
            inner_access_policy: (!member_rule).then(|| "drop".into()),
            ingress,
            egress: vec![Rule {
                policy: Some("accept".into()),
                ip_protocol: Some(ProtocolValue::Name("all".into())),
                dest_cidr_ip: Some("0.0.0.0/0".into()),
                ..Rule::default()
            }],
            ..Group::default()
        }],
        ..Document::default()
    }
}

/// A host's file: `[datastore]` and, for a simulated host, `vm<i>`.
fn host_file(dir: &Path, endpoint: &str, prefix: &str, host_id: &str, vm: Option<usize>) -> String {
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n\n[datastore]\nkind = \"etcd\"\nendpoints = [\"{endpoint}\"]\n\
         prefix = \"{prefix}\"\nhost_id = \"{host_id}\"\n",
        dir.display()
    );
    if let Some(i) = vm {
        text += &format!(
            "\n[[interface]]\nname = \"vm{i}\"\nmode = \"hypervisor\"\n\
             addresses = [\"10.{}.{}.1\"]\nsecurity_groups = [\"{GROUP}\"]\n",
            i / 250,
            i % 250
        );
    }
    text
}

/// A fleet host's `Store` on a fresh state directory, and the sender its
/// events come on (kept to stop its thread).
fn open_host(
    root: &Path,
    endpoint: &str,
    prefix: &str,
    host_id: &str,
    vm: Option<usize>,
) -> (
    Store,
    tokio::sync::mpsc::UnboundedReceiver<FleetEvent>,
    UnboundedSender<FleetEvent>,
) {
    let dir = root.join(host_id);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sg.toml");
    std::fs::write(&file, host_file(&dir, endpoint, prefix, host_id, vm)).unwrap();
    let (tx, rx) = unbounded_channel();
    let settings = FleetSettings {
        endpoints: vec![endpoint.into()],
        prefix: prefix.into(),
        host_id: host_id.into(),
        tls: None,
        lease_ttl_secs: 10,
    };
    let fleet = Fleet::start(settings, tx.clone()).expect("Fleet::start");
    let store = Store::open_fleet(&dir, &file, fleet).expect("Store::open_fleet");
    (store, rx, tx)
}

/// The stop sentinel a host's thread ends on.
fn stop_event() -> FleetEvent {
    FleetEvent::Disconnected {
        error: "bench: stop".into(),
    }
}

/// Held around a host's handling of an event with `--serial`: one host
/// at a time handles, so that its CPU time is its own work and not
/// inflated by 100 threads sharing two CPUs' caches.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A simulated host: sgd's handling of fleet events up to the kernel.
fn run_host(
    host: usize,
    mut store: Store,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<FleetEvent>,
    reports: std_mpsc::Sender<Report>,
    serial: bool,
) {
    let mut cache = CompileCache::default();
    // `t` and `cpu`: when the handling of the event began; `view`: what
    // `fleet_view` took of it.
    let mut handle = |store: &mut Store,
                      config: Option<sg_daemon::model::Config>,
                      t: Instant,
                      cpu: Duration,
                      view: (Duration, Duration)| {
        let Some(config) = config else { return };
        let addresses = resolve_addresses(&config);
        addresses.check_group_sizes(&config).expect("group sizes");
        cache.compile_all(&config, &addresses).expect("compiles");
        store.publish_bindings(&addresses);
        let at = Instant::now();
        let _ = reports.send(Report {
            host,
            at,
            mark: mark(store.document()),
            members: config.fleet_members.get(GROUP).map_or(0, Vec::len),
            wall: at - t,
            cpu: thread_cpu() - cpu,
            view_wall: view.0,
            view_cpu: view.1,
        });
    };
    // The start: what sgd applies before its main loop.
    let first = store.config().clone();
    let zero = (Duration::ZERO, Duration::ZERO);
    handle(&mut store, Some(first), Instant::now(), thread_cpu(), zero);
    while let Some(event) = rx.blocking_recv() {
        let t = Instant::now();
        let _turn = serial.then(|| SERIAL.lock().unwrap());
        let cpu = thread_cpu();
        // Only the newest view matters: take what is queued (as sgd).
        let mut newest = None;
        let mut next = Some(event);
        while let Some(event) = next {
            match event {
                FleetEvent::View(view) => newest = Some(view),
                FleetEvent::Disconnected { error } if error == "bench: stop" => return,
                _ => {}
            }
            next = rx.try_recv().ok();
        }
        // sgd applies inside `fleet_view`; here the config it would
        // apply is kept and compiled below, without the kernel.
        let mut applied = None;
        let taken = newest.and_then(|view| {
            store.fleet_view(view, &mut |c: &Config| {
                applied = Some(c.clone());
                Ok(ApplyReport::default())
            })
        });
        let config = match taken {
            Some(Ok(_)) => applied,
            _ => None,
        };
        let view = (t.elapsed(), thread_cpu() - cpu);
        handle(&mut store, config, t, cpu, view);
    }
}

/// Per N: every host's propagation per round, the slowest per round, and
/// the per-host costs.
struct Outcome {
    hosts: usize,
    rounds: usize,
    all: Vec<Duration>,
    slowest: Vec<Duration>,
    missing: usize,
    commit: Vec<Duration>,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    view_wall: Vec<Duration>,
    view_cpu: Vec<Duration>,
    process_cpu: Duration,
    startup: Duration,
}

fn run_fleet(endpoint: &str, n: usize, rounds: usize, member_rule: bool, serial: bool) -> Outcome {
    let prefix = format!("/bench-{n}");
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // The editor seeds the prefix first: hosts' bindings need the group.
    let (mut editor, mut editor_rx, _editor_tx) =
        open_host(root.path(), endpoint, &prefix, "editor", None);
    editor.push(&seed(member_rule)).expect("datastore push");
    let drain_editor =
        |editor: &mut Store, rx: &mut tokio::sync::mpsc::UnboundedReceiver<FleetEvent>| {
            while let Ok(event) = rx.try_recv() {
                if let FleetEvent::View(view) = event {
                    editor.fleet_view(view, &mut |_| Ok(ApplyReport::default()));
                }
            }
        };
    let deadline = Instant::now() + Duration::from_secs(10);
    while editor.document().security_group.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pushed group never came back"
        );
        thread::sleep(Duration::from_millis(10));
        drain_editor(&mut editor, &mut editor_rx);
    }

    let (reports_tx, reports) = std_mpsc::channel();
    let mut stops = Vec::new();
    let mut threads = Vec::new();
    for i in 0..n {
        let (store, rx, tx) =
            open_host(root.path(), endpoint, &prefix, &format!("h{i:03}"), Some(i));
        let reports_tx = reports_tx.clone();
        stops.push(tx);
        threads.push(
            thread::Builder::new()
                .name(format!("host{i}"))
                .spawn(move || run_host(i, store, rx, reports_tx, serial))
                .unwrap(),
        );
    }
    // Settled: every host has compiled with every other host's instance.
    let mut members = vec![usize::MAX; n];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    loop {
        match reports.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => {
                members[r.host] = r.members;
                quiet_since = Instant::now();
            }
            Err(_) => {
                let settled = members.iter().all(|&m| m == n - 1);
                if settled && quiet_since.elapsed() > Duration::from_millis(500) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the fleet did not settle: members seen {members:?}"
                );
            }
        }
    }
    let startup = started.elapsed();

    let mut out = Outcome {
        hosts: n,
        rounds,
        all: Vec::new(),
        slowest: Vec::new(),
        missing: 0,
        commit: Vec::new(),
        wall: Vec::new(),
        cpu: Vec::new(),
        view_wall: Vec::new(),
        view_cpu: Vec::new(),
        process_cpu: Duration::ZERO,
        startup,
    };
    let cpu0 = process_cpu();
    for round in 0..rounds {
        drain_editor(&mut editor, &mut editor_rx);
        let port = 20_000 + round as u16;
        let want = (round % 2 == 0).then_some(port);
        // `sgctl rule add` / `rule delete` through the editor's sgd.
        let mut doc = editor.document().clone();
        let group = (doc.security_group.iter_mut())
            .find(|g| g.id == GROUP)
            .unwrap();
        match want {
            Some(port) => group.ingress.push(tcp_rule(port, MARK_CIDR)),
            None => group
                .ingress
                .retain(|r| r.source_cidr_ip.as_deref() != Some(MARK_CIDR)),
        }
        editor.check_writable(&doc).expect("writable");
        let mut config = doc.validate(Path::new("request")).expect("a valid edit");
        editor.complete(&mut config);
        doc.fill_rule_ids(&config);
        doc.canonical_addresses();
        let t0 = Instant::now();
        editor.commit(doc, config).expect("the commit");
        out.commit.push(t0.elapsed());

        let mut done: BTreeMap<usize, Duration> = BTreeMap::new();
        let limit = t0 + ROUND_LIMIT;
        while done.len() < n {
            let Some(left) = limit.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(r) = reports.recv_timeout(left) else {
                break;
            };
            if r.mark == want && r.at >= t0 && !done.contains_key(&r.host) {
                done.insert(r.host, r.at - t0);
                out.wall.push(r.wall);
                out.cpu.push(r.cpu);
                out.view_wall.push(r.view_wall);
                out.view_cpu.push(r.view_cpu);
            }
        }
        out.missing += n - done.len();
        out.slowest.extend(done.values().max().copied());
        out.all.extend(done.into_values());
        // Let what the change set off (nothing else should) die down.
        thread::sleep(Duration::from_millis(100));
        while reports.try_recv().is_ok() {}
    }
    out.process_cpu = process_cpu() - cpu0;

    for tx in &stops {
        let _ = tx.send(stop_event());
    }
    for t in threads {
        t.join().unwrap();
    }
    out.all.sort();
    out.slowest.sort();
    out
}

fn main() {
    let mut sizes = Vec::new();
    let mut rounds = 20;
    let mut member_rule = true;
    let mut serial = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .expect("--rounds R")
            }
            "--fixed-table" => member_rule = false,
            "--serial" => serial = true,
            "--bench" => {}
            n => match n.parse::<usize>() {
                Ok(n) if n >= 2 => sizes.push(n),
                _ => panic!(
                    "usage: fleet [N...] [--rounds R] [--fixed-table] [--serial]; unexpected {n:?}"
                ),
            },
        }
    }
    if sizes.is_empty() {
        sizes = vec![10, 100];
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the fleet bench needs root (namespaces, etcd)");
        std::process::exit(1);
    }

    let etcd = Etcd::single("fb-etcd").expect("etcd in a namespace");
    let ns: Netns = etcd
        .mgmt()
        .host("fb-hosts", HOSTS_IP)
        .expect("the hosts' namespace");
    let endpoint = etcd.endpoint(0);
    println!(
        "fleet propagation: etcd 1 member ({endpoint}, namespace), simulated hosts (Fleet + Store + compile, no attach), {rounds} rounds per N, {}",
        match member_rule {
            true =>
                "intra-group accept and a rule from the group itself (every host's instance in every table)",
            false =>
                "no rule from a group, intra-group drop: the same table at every N (--fixed-table)",
        }
    );
    if serial {
        println!("--serial: one host at a time handles an event (its CPU time its own)");
    }
    let outcomes: Vec<Outcome> = sizes
        .iter()
        .map(|&n| ns.run_in(|| run_fleet(&endpoint, n, rounds, member_rule, serial)))
        .collect();

    println!();
    println!(
        "{:>5} {:>7} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9} {:>11} {:>8} {:>11} {:>8} {:>13} {:>9}",
        "hosts",
        "samples",
        "p50 ms",
        "p99 ms",
        "max ms",
        "all-p50 ms",
        "all-max ms",
        "commit ms",
        "host wall",
        "(view)",
        "host CPU",
        "(view)",
        "proc CPU/host",
        "startup s"
    );
    for o in &outcomes {
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        let mut commit = o.commit.clone();
        commit.sort();
        println!(
            "{:>5} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {:>11.1} {:>9.1} {:>8.2} ms {:>8.2} {:>8.2} ms {:>8.2} {:>10.2} ms {:>9.1}",
            o.hosts,
            o.all.len(),
            ms(pct(&o.all, 50.0)),
            ms(pct(&o.all, 99.0)),
            ms(*o.all.last().unwrap()),
            ms(pct(&o.slowest, 50.0)),
            ms(*o.slowest.last().unwrap()),
            ms(pct(&commit, 50.0)),
            ms(mean(&o.wall)),
            ms(mean(&o.view_wall)),
            ms(mean(&o.cpu)),
            ms(mean(&o.view_cpu)),
            ms(o.process_cpu / (o.hosts * o.rounds) as u32),
            o.startup.as_secs_f64(),
        );
        if o.missing > 0 {
            println!(
                "      {} host-rounds did not arrive within {ROUND_LIMIT:?}",
                o.missing
            );
        }
    }
    println!(
        "\np50/p99/max: every host and round, from just before the commit to the host's compile returning;\n\
         all-p50/all-max: the slowest host of each round; commit: the editor's transaction;\n\
         host wall/CPU: mean per host and change of fleet_view + resolve + compile + publish,\n\
         (view): of which fleet_view (compose and validate, keep the view on disk);\n\
         proc CPU/host: the process's CPU over the rounds / (hosts x rounds), connections included."
    );
    drop(ns);
    drop(etcd);
}
