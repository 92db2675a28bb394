//! `cargo xtask bench --scale` (`cargo bench -p sg-daemon --bench scale`,
//! as root): a hypervisor's apply at scale, on real interfaces.
//!
//! A benchmark, not a test: it prints figures. Each round creates a
//! network namespace of its own with 1000 veth interfaces (see `host`)
//! and a bpffs, and runs an in-process [`Daemon`] there, as `sgd` does:
//! pinned maps, both hooks of every interface attached (TCX on this
//! kernel) with pinned links. The config (see `config`): 10 groups of 100
//! rules, one hypervisor-mode binding per interface with its address and
//! MAC, every binding on `sg-0`. It measures:
//!
//! - parsing and validating the config text;
//! - the full first apply (`Daemon::start`: load, compile, install, anti-
//!   spoofing entries, attach);
//! - the map memory in all (`memlock` of every map, see `memory`);
//! - `Daemon::in_sync` (what `sgd` runs after each burst of link events);
//! - an unchanged re-apply (a reload of the same file);
//! - one rule of `sg-0` changed: an apply that reaches every interface;
//! - a restart: a second daemon taking over the pinned maps and links of
//!   the first (`Daemon::start` again, its first apply writing tables of
//!   its own for every interface).
//!
//! Medians over `SG_SCALE_ROUNDS` rounds (default 3); the interface count
//! is `SG_SCALE_INTERFACES` (default 1000); `SG_SCALE_ATTACH=tc` attaches
//! in classic TC instead of the default (`auto`: TCX here);
//! `SG_SCALE_MODE=instance` binds in instance mode (see `config`).

mod config;
mod host;
mod memory;

use std::time::{Duration, Instant};

use sg_daemon::daemon::Daemon;

/// The goals of issue #10.
const APPLY_GOAL: Duration = Duration::from_secs(2);
const CHANGE_GOAL: Duration = Duration::from_millis(200);
const MEMORY_GOAL_MIB: f64 = 64.0;

/// What one round measured.
struct Round {
    create: Duration,
    parse: Duration,
    start: Duration,
    in_sync: Duration,
    reapply: Duration,
    change: Duration,
    switched: usize,
    restart: Duration,
    memory: Vec<memory::MapMemory>,
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SG_SCALE_MODE=instance`: instance-mode bindings without addresses
/// (the host's own are read) instead of hypervisor-mode ones.
fn instance_mode() -> bool {
    std::env::var("SG_SCALE_MODE").is_ok_and(|m| m == "instance")
}

/// `attach = ...` from `SG_SCALE_ATTACH`, if set.
fn attach_setting() -> String {
    std::env::var("SG_SCALE_ATTACH").map_or(String::new(), |m| format!("attach = {m:?}\n"))
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}

fn round(n: usize) -> Round {
    host::in_new_netns(|| {
        let ((), create) = timed(|| host::add_interfaces(n));
        let dirs = host::Dirs::new();
        let daemon_table = dirs.daemon_table() + &attach_setting();
        let text = config::text(&daemon_table, host::name, n, 22, instance_mode());
        let (cfg, parse) = timed(|| config::parse(&text));
        let changed = config::parse(&config::text(
            &daemon_table,
            host::name,
            n,
            2222,
            instance_mode(),
        ));

        let (started, start) = timed(|| Daemon::start(&cfg));
        let (mut daemon, report) = started.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.enforced.len(), n, "not every interface enforced");
        assert_eq!(daemon.dataplane().attached().count(), n);
        let memory = memory::maps();

        let (synced, in_sync) = timed(|| daemon.in_sync(&cfg));
        assert!(synced, "in_sync after the apply says no");
        let (r, reapply) = timed(|| daemon.apply(&cfg));
        r.unwrap_or_else(|e| panic!("{e:#}"));

        let ifindexes: Vec<u32> = (0..n)
            .map(|i| nix::net::if_::if_nametoindex(host::name(i).as_str()).expect("ifindex"))
            .collect();
        let before: Vec<_> = ifindexes
            .iter()
            .map(|i| daemon.dataplane().tables_of(*i))
            .collect();
        let (r, change) = timed(|| daemon.apply(&changed));
        r.unwrap_or_else(|e| panic!("{e:#}"));
        let switched = ifindexes
            .iter()
            .zip(&before)
            .filter(|(i, b)| daemon.dataplane().tables_of(**i) != **b)
            .count();
        // Stopped without `--detach`: the next daemon takes over.
        drop(daemon);
        let (started, restart) = timed(|| Daemon::start(&changed));
        let (mut daemon, report) = started.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(report.enforced.len(), n, "not every interface taken over");
        daemon.detach_everything().expect("detach");
        Round {
            restart,
            create,
            parse,
            start,
            in_sync,
            reapply,
            change,
            switched,
            memory,
        }
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median, min and max of one step over the rounds.
fn stats(rounds: &[Round], step: impl Fn(&Round) -> Duration) -> (f64, f64, f64) {
    let mut v: Vec<f64> = rounds.iter().map(|r| ms(step(r))).collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn verdict(met: bool, value: f64, goal: f64) -> String {
    if met {
        format!("met ({:.1}x under)", goal / value)
    } else {
        format!("NOT met ({:.1}x over)", value / goal)
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the scale benchmark creates a namespace and loads eBPF: run it as root");
        std::process::exit(1);
    }
    let n = env("SG_SCALE_INTERFACES", 1000);
    let rounds_wanted = env("SG_SCALE_ROUNDS", 3).max(1);
    println!(
        "sg scale benchmark: {n} {}-mode veth interfaces, {} groups of 100 rules, \
         {} CPUs, {rounds_wanted} rounds{}",
        if instance_mode() {
            "instance"
        } else {
            "hypervisor"
        },
        config::GROUPS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("SG_SCALE_ATTACH").map_or(String::new(), |m| format!(", attach = {m}"))
    );
    let rounds: Vec<Round> = (0..rounds_wanted)
        .map(|i| {
            let r = round(n);
            println!(
                "  round {}: start {:.0} ms, change {:.1} ms ({} switched), re-apply {:.1} ms, \
                 restart {:.0} ms",
                i + 1,
                ms(r.start),
                ms(r.change),
                r.switched,
                ms(r.reapply),
                ms(r.restart)
            );
            r
        })
        .collect();

    println!("\n| step | median | min | max | goal |");
    println!("|---|---|---|---|---|");
    let row = |what: &str, step: &dyn Fn(&Round) -> Duration, goal: Option<Duration>| {
        let (med, min, max) = stats(&rounds, step);
        let goal = goal.map_or(String::new(), |g| {
            format!("≤ {:.0} ms: {}", ms(g), verdict(med <= ms(g), med, ms(g)))
        });
        println!("| {what} | {med:.1} ms | {min:.1} ms | {max:.1} ms | {goal} |");
    };
    row(
        &format!("create {n} veth pairs (setup)"),
        &|r| r.create,
        None,
    );
    row("parse + validate the config", &|r| r.parse, None);
    row(
        "full first apply (Daemon::start, attach)",
        &|r| r.start,
        Some(APPLY_GOAL),
    );
    row(
        &format!(
            "one rule of sg-0 changed ({} interfaces switched)",
            rounds[0].switched
        ),
        &|r| r.change,
        Some(CHANGE_GOAL),
    );
    row("unchanged re-apply", &|r| r.reapply, None);
    row(
        "restart: take over pinned links, new tables",
        &|r| r.restart,
        Some(APPLY_GOAL),
    );
    row("in_sync (after link events)", &|r| r.in_sync, None);

    let memory = &rounds[0].memory;
    let total: u64 = memory.iter().map(|m| m.bytes).sum();
    println!(
        "\nmap memory in all: {:.1} MiB; goal ≤ {MEMORY_GOAL_MIB:.0} MiB: {}",
        memory::mib(total),
        verdict(
            memory::mib(total) <= MEMORY_GOAL_MIB,
            memory::mib(total),
            MEMORY_GOAL_MIB
        )
    );
    println!("| map | MiB |\n|---|---|");
    for m in memory.iter().filter(|m| m.bytes >= 64 * 1024) {
        println!("| {} | {:.2} |", m.name, memory::mib(m.bytes));
    }
    let rest: u64 = memory
        .iter()
        .filter(|m| m.bytes < 64 * 1024)
        .map(|m| m.bytes)
        .sum();
    println!(
        "| the other {} maps | {:.2} |",
        memory.iter().filter(|m| m.bytes < 64 * 1024).count(),
        memory::mib(rest)
    );
}
