//! Switched-out tables (SPEC §6, "a packet sees the old rules or the new
//! ones"): each is freed a grace period after its own switch, never
//! earlier and never later because something else happened, and its id is
//! not reused before; a change the maps cannot hold whole is refused before
//! anything is written, every interface keeping its tables.
//!
//! The first tests drive the loaded classifier directly (`common`'s
//! [`Kernel`], interfaces other than `lo` being mere indexes); the last
//! runs hundreds of rule changes through the API of a running `sgd` while
//! `sgctl drops --follow` polls it.

mod common;

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    path::Path,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, lpm_trie::LpmTrie};
use common::{Kernel, LOOPBACK_IFINDEX, compile_first, parse};
use sg_common::{
    AddrKey, Bitmap, CB_REASON, CB_RULE, MAP_LAYOUT_VERSION, MAX_TABLES, PortKey, ProtoKey, Reason,
    maps,
};
use sg_daemon::{
    compile::{CompiledTable, Origin},
    dataplane::{Dataplane, GRACE},
};
use sg_tests::{
    DROPPED, Group, PASS, Tcp, Topology, accept_in, check, drop_in, enforce, groups_on, probe,
    tcp_servers,
};

/// HTTP from anywhere, on `lo`.
fn small() -> String {
    groups_on(
        "lo",
        &[Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")])],
    )
}

/// 120 odd port ranges from anywhere, on `lo`: many port-trie entries.
fn wide() -> String {
    let rules = (0..120u32).map(|i| {
        let from = 1 + 7 * i;
        accept_in("tcp", &format!("{from}/{}", 60_000 - 3 * i), "0.0.0.0/0")
    });
    groups_on("lo", &[Group::new("sg-wide").rules(rules)])
}

/// The number of entries of the tables' maps, in the order of [`maps`]:
/// `SG_PROTO`, `SG_ADDR`, `SG_PORT`.
fn entries(dp: &Dataplane) -> [usize; 3] {
    dp.table_entries().expect("the tables' maps")
}

/// The ids of the kernel tables the interfaces use, by ifindex.
fn tables_of(dp: &Dataplane, ifindexes: &[u32]) -> Vec<Option<[u32; 2]>> {
    ifindexes.iter().map(|i| dp.tables_of(*i)).collect()
}

/// A copy of `tables` told apart by an origin of its own (`tag`): it
/// decides as `tables` do, but is not shared with them (equal tables are,
/// taking no room of their own).
fn copy_of(tables: &[CompiledTable; 2], tag: u32) -> [CompiledTable; 2] {
    tables.clone().map(|mut t| {
        t.origins.push(Origin::Rule {
            group: "copy".into(),
            id: tag.to_string(),
        });
        t
    })
}

/// `count` interfaces (ifindex 100 and up) on copies of `tables` of their
/// own, in one change.
fn fill(dp: &mut Dataplane, count: u32, tables: &[CompiledTable; 2]) {
    let copies: Vec<[CompiledTable; 2]> = (100..100 + count)
        .map(|ifindex| copy_of(tables, ifindex))
        .collect();
    let switches: Vec<_> = (100..100 + count)
        .zip(&copies)
        .map(|(ifindex, [i, o])| (ifindex, 0, [i, o]))
        .collect();
    dp.install_all(&switches).expect("filling");
}

/// Takes most of the maps' room, given the tables before and after a
/// change.
type Exhaust = fn(&mut Dataplane, &[CompiledTable; 2], &[CompiledTable; 2]);

/// A change of three interfaces that the maps cannot hold whole (ids in
/// one case, port-trie entries in the other, one interface's worth being
/// left) is refused before anything is written: every interface keeps its
/// tables, nothing is left in the maps, lo's packets still meet the old
/// rules; a change of one interface fits after it.
#[test]
fn a_change_that_does_not_fit_is_refused_whole() {
    let (old, new) = (parse(&small()), parse(&wide()));
    let (_, old_tables) = compile_first(&old);
    let (_, new_tables) = compile_first(&new);
    let port_entries = new_tables[0].port.len() + new_tables[1].port.len();
    assert!(port_entries > 300, "too few port entries: {port_entries}");
    let cases: [(&str, Exhaust); 2] = [
        ("table ids", |dp, old, _| {
            // Leaves 4 ids: one interface's worth and a half.
            let free = MAX_TABLES as usize - dp.tables_in_use().len();
            fill(dp, (free as u32 - 4) / 2, old);
        }),
        ("port entries", |dp, _, new| {
            let per = (new[0].port.len() + new[1].port.len()) as u32;
            let free = sg_common::PORT_TRIE_ENTRIES - entries(dp)[2] as u32;
            // Leaves room for two interfaces' worth, not three.
            fill(dp, free / per - 2, new);
        }),
    ];
    let ifaces = [LOOPBACK_IFINDEX, 2, 3];
    let syn_to = |port| {
        let tcp = sg_tests::frames::tcp_syn(40000, port);
        sg_tests::frames::ip_frame(
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            sg_tests::frames::TCP,
            &tcp,
        )
    };
    for (what, exhaust) in cases {
        let mut k = Kernel::new(&small());
        let [i, o] = &old_tables;
        k.dataplane
            .install_all(&[(2, 0, [i, o]), (3, 0, [i, o])])
            .unwrap();
        exhaust(&mut k.dataplane, &old_tables, &new_tables);
        let before = (tables_of(&k.dataplane, &ifaces), entries(&k.dataplane));
        // Tables of their own: three interfaces' worth.
        let copies: Vec<_> = ifaces.iter().map(|f| copy_of(&new_tables, *f)).collect();
        let change: Vec<_> = ifaces
            .iter()
            .zip(&copies)
            .map(|(f, [i, o])| (*f, 0, [i, o]))
            .collect();
        let refused = k.dataplane.install_all(&change);
        assert!(
            refused.is_err(),
            "{what}: a change that does not fit applied"
        );
        let after = (tables_of(&k.dataplane, &ifaces), entries(&k.dataplane));
        assert_eq!(before, after, "{what}: {:#}", refused.unwrap_err());
        // lo still opens 80 only, not the wide ranges' 1000.
        let hook = k.hook(sg_daemon::model::Direction::Ingress);
        assert_eq!(k.run(hook, &syn_to(80)).code, common::PASS, "{what}");
        assert_eq!(k.run(hook, &syn_to(1000)).code, common::DROP, "{what}");
        let [i, o] = &new_tables;
        k.dataplane
            .install(LOOPBACK_IFINDEX, 0, [i, o])
            .unwrap_or_else(|e| panic!("{what}: one interface's change: {e:#}"));
    }
}

/// A switched-out table keeps its id for the grace period: it is not
/// freed by a collection before then, nor by an install that runs short
/// of ids (which is refused instead); making room for a change waits for
/// the end of that period, and frees it then.
#[test]
fn switched_out_tables_keep_their_ids_for_the_grace_period() {
    let config = parse(&small());
    let (_, [i, o]) = compile_first(&config);
    let mut k = Kernel::new(&small());
    k.dataplane.set_grace(GRACE);
    let first = k.dataplane.tables_of(LOOPBACK_IFINDEX).unwrap();
    // A copy: equal tables would not switch.
    let [ci, co] = copy_of(&[i.clone(), o.clone()], 1);
    k.dataplane
        .install(LOOPBACK_IFINDEX, 0, [&ci, &co])
        .unwrap();
    let switched = Instant::now();
    k.dataplane.collect_garbage().unwrap();
    let in_use = k.dataplane.tables_in_use();
    assert!(first.iter().all(|id| in_use.contains(id)), "freed at once");
    // Every id taken but the retired ones': the next change must wait.
    let free = MAX_TABLES as usize - in_use.len();
    fill(&mut k.dataplane, free as u32 / 2, &[i.clone(), o.clone()]);
    let refused = k.dataplane.install(LOOPBACK_IFINDEX, 0, [&i, &o]);
    assert!(
        refused.is_err(),
        "an install freed tables switched out {:?} earlier",
        switched.elapsed()
    );
    // Making room waits for the grace period, then frees them.
    k.dataplane
        .make_room(&[(LOOPBACK_IFINDEX, 0, [&i, &o])])
        .unwrap();
    assert!(
        switched.elapsed() >= GRACE,
        "room made after {:?}",
        switched.elapsed()
    );
    let in_use = k.dataplane.tables_in_use();
    assert!(first.iter().all(|id| !in_use.contains(id)), "never freed");
    k.dataplane.install(LOOPBACK_IFINDEX, 0, [&i, &o]).unwrap();
}

/// The entries of a pinned map (`maps-v<n>/name` under `bpffs`).
fn pinned_entries(bpffs: &Path, name: &str) -> usize {
    let path = bpffs.join(format!("maps-v{MAP_LAYOUT_VERSION}")).join(name);
    let data = MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let map = Map::from_map_data(data).unwrap();
    if name == maps::PROTO {
        BpfHashMap::<_, ProtoKey, Bitmap>::try_from(&map)
            .unwrap()
            .keys()
            .count()
    } else if name == maps::ADDR {
        LpmTrie::<_, AddrKey, Bitmap>::try_from(&map)
            .unwrap()
            .keys()
            .count()
    } else {
        LpmTrie::<_, PortKey, Bitmap>::try_from(&map)
            .unwrap()
            .keys()
            .count()
    }
}

/// The entries of a running daemon's table maps (proto, addr, port).
fn daemon_entries(bpffs: &Path) -> [usize; 3] {
    [maps::PROTO, maps::ADDR, maps::PORT].map(|name| pinned_entries(bpffs, name))
}

/// 300 rule changes through the API (an SSH rule added and removed in
/// turn), while `sgctl drops --follow` polls the daemon twice a second:
/// every change applies, the switched-out tables are freed a second after
/// their switch (the maps never hold more than the tables of the changes
/// of the last two seconds, and end as they began), and the rules in
/// force are right after.
#[test]
fn rule_changes_while_drops_are_followed_free_their_tables() {
    const CHANGES: usize = 300;
    let t = Topology::pair("retire").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let web = Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")]);
    let sgd = enforce(s, &[web]);
    let ctl = sgd.ctl();
    let bpffs = sgd.dirs().bpffs_dir();
    let mut follow = ctl
        .command(&["drops", "--follow"])
        .stdout(Stdio::null())
        .spawn()
        .expect("sgctl drops --follow");
    thread::sleep(Duration::from_millis(600));
    let start = daemon_entries(&bpffs);
    let add = "rule add sg-web ingress --id stress --policy accept --ip-protocol tcp \
               --port-range 22/22 --source-cidr-ip 198.51.100.0/24";
    let add: Vec<&str> = add.split_whitespace().collect();
    // When each change was made, to bound what may still wait.
    let mut made: Vec<Instant> = Vec::new();
    let mut most = [0; 3];
    for n in 0..CHANGES {
        if n % 2 == 0 {
            ctl.ok(&add);
        } else {
            ctl.ok(&["rule", "remove", "sg-web", "stress"]);
        }
        made.push(Instant::now());
        if n % 25 == 24 {
            let now = daemon_entries(&bpffs);
            // The tables of changes made in the last two seconds and those
            // in force (each pair a few entries more than at first, at
            // most).
            let recent = made.iter().filter(|at| at.elapsed() < 2 * GRACE).count();
            for m in 0..3 {
                most[m] = most[m].max(now[m]);
                assert!(
                    now[m] <= (recent + 2) * (start[m] + 8),
                    "change {n}: {now:?} entries, {recent} recent changes, {start:?} at first"
                );
            }
        }
    }
    thread::sleep(GRACE + Duration::from_millis(500));
    let end = daemon_entries(&bpffs);
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(
        end, start,
        "entries left after the changes (at most {most:?})"
    );
    check(&[
        probe("http", Tcp(80), c, s.ipv4(), PASS),
        probe("ssh", Tcp(22), c, s.ipv4(), DROPPED),
    ]);
}

/// `BPF_PROG_TEST_RUN` of the program `prog` on `frame`, callable from
/// any thread while the tables change: the TC return code, the reason and
/// the deciding rule's index read back from `skb->cb`.
fn test_run(prog: BorrowedFd, frame: &[u8]) -> (u32, u32, u32) {
    /// `union bpf_attr`'s member for `BPF_PROG_TEST_RUN`.
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    const SKB_SIZE: usize = 192;
    let ctx_in = [0u8; SKB_SIZE];
    let mut ctx_out = [0u8; SKB_SIZE];
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ctx_size_in: SKB_SIZE as u32,
        ctx_size_out: SKB_SIZE as u32,
        ctx_in: ctx_in.as_ptr() as u64,
        ctx_out: ctx_out.as_mut_ptr() as u64,
        ..TestAttr::default()
    };
    // SAFETY: attr points at live buffers of the sizes it gives.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    // skb->cb starts at byte 48 of struct __sk_buff.
    let cb = |i: usize| u32::from_ne_bytes(ctx_out[48 + 4 * i..52 + 4 * i].try_into().unwrap());
    (attr.retval, cb(CB_REASON), cb(CB_RULE))
}

/// Three rulesets switched in turn on lo, 3000 changes as `sgd` makes them
/// (room made, installed, retired tables freed when due), while another
/// thread classifies one inbound SSH SYN without a pause: every verdict is
/// one of the three rulesets' (each drops it by a rule of its own), never
/// a table read half freed or rewritten.
#[test]
fn packets_classified_during_changes_meet_one_ruleset() {
    // More than the table ids: ids are freed and reused on the way.
    const CHANGES: usize = 3000;
    let rulesets = [
        vec![drop_in("tcp", "22/22", "192.0.2.0/24")],
        vec![
            accept_in("tcp", "80/80", "0.0.0.0/0"),
            drop_in("udp", "9/9", "203.0.113.0/24"),
            drop_in("tcp", "20/30", "192.0.2.1/32"),
        ],
        vec![
            accept_in("udp", "53/53", "198.51.100.0/24"),
            drop_in("tcp", "22/22", "2001:db8::/32"),
            drop_in("tcp", "443/443", "0.0.0.0/0"),
            drop_in("tcp", "1/1000", "192.0.2.0/28"),
        ],
    ]
    .map(|rules| parse(&groups_on("lo", &[Group::new("sg-x").rules(rules)])));
    let compiled = rulesets.each_ref().map(|c| compile_first(c).1);
    let frame = sg_tests::frames::ip_frame(
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        sg_tests::frames::TCP,
        &sg_tests::frames::tcp_syn(40000, 22),
    );
    let mut k = Kernel::new(&small());
    let hook = k.hook(sg_daemon::model::Direction::Ingress);
    let prog = k.dataplane.program(hook).unwrap().fd().unwrap().try_clone();
    let prog = prog.expect("the program's fd");
    let expected: Vec<_> = compiled
        .iter()
        .map(|[i, o]| {
            k.dataplane.install(LOOPBACK_IFINDEX, 0, [i, o]).unwrap();
            test_run(prog.as_fd(), &frame)
        })
        .collect();
    for (n, v) in expected.iter().enumerate() {
        assert_eq!(v.1, Reason::RuleDrop as u32, "ruleset {n}: {expected:?}");
    }
    assert!(
        expected[0] != expected[1] && expected[1] != expected[2] && expected[0] != expected[2],
        "the rulesets must tell apart: {expected:?}"
    );
    k.dataplane.set_grace(GRACE);
    let stop = AtomicBool::new(false);
    let (runs, wrong) = thread::scope(|s| {
        let classifier = s.spawn(|| {
            let (mut runs, mut wrong) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let v = test_run(prog.as_fd(), &frame);
                if !expected.contains(&v) && wrong.len() < 10 {
                    wrong.push(v);
                }
                runs += 1;
            }
            (runs, wrong)
        });
        for n in 0..CHANGES {
            let [i, o] = &compiled[n % 3];
            let change = [(LOOPBACK_IFINDEX, 0, [i, o])];
            let dp = &mut k.dataplane;
            let done = dp.make_room(&change).and_then(|()| dp.install_all(&change));
            done.and_then(|()| dp.collect_garbage())
                .unwrap_or_else(|e| {
                    stop.store(true, Ordering::SeqCst);
                    panic!("change {n}: {e:#}")
                });
        }
        stop.store(true, Ordering::SeqCst);
        classifier.join().unwrap()
    });
    assert!(
        wrong.is_empty(),
        "verdicts of no ruleset (code, reason, rule): {wrong:?}, expected one of {expected:?}"
    );
    assert!(runs > CHANGES, "only {runs} packets classified");
}

/// A freed table leaves no rule counters behind (issue #9, item 3): the
/// table that reuses its id starts from none, while the daemon is handed
/// the freed table's final counts once (to add to the rules it held).
#[test]
fn a_freed_tables_counters_go_with_it() {
    let mut k = Kernel::new(&small());
    let first = k.dataplane.tables_of(LOOPBACK_IFINDEX).unwrap();
    let syn = sg_tests::frames::ip_frame(
        "192.0.2.1".parse().unwrap(),
        "192.0.2.2".parse().unwrap(),
        sg_tests::frames::TCP,
        &sg_tests::frames::tcp_syn(40000, 80),
    );
    let hook = k.hook(sg_daemon::model::Direction::Ingress);
    assert_eq!(k.run(hook, &syn).code, common::PASS);
    let counted = |dp: &Dataplane, ids: &[u32]| -> u64 {
        let counters = dp.rule_counters().unwrap();
        let of = counters.iter().filter(|(key, _)| ids.contains(&key.table));
        of.map(|(_, c)| c.packets).sum()
    };
    assert_eq!(counted(&k.dataplane, &first), 1);
    // Two changes: the first one's tables are freed (grace zero) and
    // their ids taken again.
    k.install(&parse(&wide()));
    k.install(&parse(&small()));
    let now = k.dataplane.tables_of(LOOPBACK_IFINDEX).unwrap();
    assert!(
        now.iter().any(|id| first.contains(id)),
        "ids {first:?} not reused: {now:?}"
    );
    assert_eq!(counted(&k.dataplane, &now), 0, "inherited counts");
    let freed = k.dataplane.take_freed_counts();
    let packets: u64 = freed.iter().map(|(_, c)| c.packets).sum();
    assert_eq!(packets, 1, "{freed:?}");
    assert!(k.dataplane.take_freed_counts().is_empty(), "handed twice");
}
