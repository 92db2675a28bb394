//! `cargo bench -p sg-daemon --bench sharing` (as root; it loads eBPF).
//!
//! A benchmark, not a test: what a hypervisor with many instances in the
//! same groups costs to apply, and what one rule change costs. N
//! hypervisor-mode bindings (100, then 1000) share 10 groups of 100 rules
//! (60 inbound, 40 outbound): binding `i` is on `sg-0` (the group a
//! change edits) and `sg-{1 + i % 9}`, so there are 9 distinct lists of
//! groups (the config of `benches/scale`). For each N:
//!
//! 1. the compile step of an apply (`CompileCache::compile_all`: tables
//!    built per distinct list of groups, each distinct table compiled and
//!    checked against the reference once), from nothing;
//! 2. installing every binding in one change (`Dataplane::install_all`),
//!    with the kernel tables and map entries it took;
//! 3. one rule of group 0 changed: the compile step again (the cache
//!    holds the other tables) and the install (only the bindings on group
//!    0 switch);
//! 4. for comparison, compiling every binding on its own as `sgd` did
//!    before tables were shared (`compile_binding` per binding).
//!
//! The interfaces need not exist: tables are installed for ifindexes that
//! no packet carries, and nothing is attached.

use std::time::{Duration, Instant};

use sg_daemon::{
    compiled::CompileCache,
    daemon::compile_binding,
    dataplane::Dataplane,
    model::{Addresses, Config},
};

#[path = "scale/config.rs"]
mod scale_config;

/// The config: 10 groups, `bindings` hypervisor-mode bindings `vm<i>`;
/// `port0` is the port of group 0's first inbound rule (the one a change
/// moves).
fn config_toml(bindings: usize, port0: u16) -> String {
    scale_config::text("", |i| format!("vm{i}"), bindings, port0, false)
}

fn parse(toml: &str) -> Config {
    scale_config::parse(toml)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Ifindexes no packet carries.
const FIRST_IFINDEX: u32 = 10_000;

fn install(
    dp: &mut Dataplane,
    compiled: &[[std::sync::Arc<sg_daemon::compile::CompiledTable>; 2]],
) {
    let switches: Vec<_> = compiled
        .iter()
        .enumerate()
        .map(|(i, [inbound, outbound])| (FIRST_IFINDEX + i as u32, 0, [&**inbound, &**outbound]))
        .collect();
    dp.make_room(&switches).expect("room");
    dp.install_all(&switches).expect("install");
}

fn run(bindings: usize, per_binding_too: bool) {
    let config = parse(&config_toml(bindings, 22));
    let changed = parse(&config_toml(bindings, 2222));
    let addresses = Addresses::resolve(&config, |_| Vec::new());
    let mut cache = CompileCache::default();
    let start = Instant::now();
    let compiled = cache.compile_all(&config, &addresses).expect("compile");
    let compile_cold = start.elapsed();
    let distinct = cache.len();

    let mut dp = Dataplane::load(&config.daemon).expect("load the eBPF program");
    dp.set_grace(Duration::ZERO);
    let start = Instant::now();
    install(&mut dp, &compiled);
    let install_all = start.elapsed();
    let tables = dp.tables_installed().len();
    let entries = dp.table_entries().expect("entries");

    let start = Instant::now();
    let recompiled = cache.compile_all(&changed, &addresses).expect("compile");
    let compile_change = start.elapsed();
    let start = Instant::now();
    let before: Vec<_> = (0..bindings)
        .map(|i| dp.tables_of(FIRST_IFINDEX + i as u32))
        .collect();
    install(&mut dp, &recompiled);
    let install_change = start.elapsed();
    let switched = (0..bindings)
        .filter(|i| dp.tables_of(FIRST_IFINDEX + *i as u32) != before[*i])
        .count();
    dp.collect_garbage().expect("collect");
    let entries_after = dp.table_entries().expect("entries");

    println!("{bindings} hypervisor-mode bindings, 10 groups of 100 rules, 9 distinct lists:");
    println!(
        "  full apply:   compile {:8.1} ms ({distinct} distinct tables), install {:8.1} ms",
        ms(compile_cold),
        ms(install_all)
    );
    println!(
        "                {tables} kernel tables; entries SG_PROTO {}, SG_ADDR {}, SG_PORT {}",
        entries[0], entries[1], entries[2]
    );
    println!(
        "  one rule:     compile {:8.1} ms, install {:8.1} ms ({switched} of {bindings} interfaces switched)",
        ms(compile_change),
        ms(install_change)
    );
    println!("                entries after the change, old tables freed: {entries_after:?}");
    if per_binding_too {
        let start = Instant::now();
        for binding in &config.interfaces {
            compile_binding(&config, binding, &addresses).expect("compile");
        }
        let each = start.elapsed();
        println!(
            "  before sharing (compile_binding per binding): {:8.1} ms, {:.0}x the shared compile",
            ms(each),
            each.as_secs_f64() / compile_cold.as_secs_f64()
        );
    }
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the sharing benchmark loads eBPF: run it as root");
        return;
    }
    run(100, true);
    run(1000, true);
}
