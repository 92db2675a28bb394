//! `sg-compare` (`cargo xtask bench --compare`): sg side by side with
//! iptables-nft and nftables holding the same rules, through a veth.
//!
//! A sender namespace blasts 64-byte UDP frames with trafgen (one process,
//! pinned to one CPU) through a veth to a receiver namespace, where they
//! are delivered locally to a UDP socket. The receiver holds one filter at
//! a time: none, sg (the real `sgd`), iptables-nft or nftables, each with
//! the same N accept rules and a drop (`filters.rs`). Two traffics:
//! one established flow, which the filter must show it holds as such
//! before the blast (`conntrack -L`, `sgctl sessions`), and every packet a
//! new flow (`traffic.rs`). The receive rate is counted by the receiver's
//! UDP layer over a fixed window (`measure.rs`).
//!
//! Each round, at each size, installs every filter in fresh namespaces of
//! its own, then measures each traffic through the filters back to back,
//! in an order rotated from round to round and size to size, so that a
//! noisy moment hits them alike; a cell of the result is the median over
//! the rounds of the ratio to no filter in the same round. The result is
//! printed as a markdown table and drawn as a PNG (`plot.rs`). Every
//! namespace is removed at the end, on an error and on Ctrl-C.

mod filters;
mod measure;
mod plot;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;

use filters::Filter;
use measure::{Reading, Sample, Summary};
use traffic::{Blaster, Pair, Sink, Traffic};

/// Set by Ctrl-C (SIGINT) or SIGTERM: the run stops at its next pause and
/// removes what it made.
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Parser, Debug)]
#[command(
    name = "sg-compare",
    about = "Receive rate through a veth with no filter, sg, iptables-nft and nftables \
             holding the same rules (as root; everything in namespaces it creates and removes)",
    after_help = "Needs trafgen (netsniff-ng), nft (nftables), iptables-nft (iptables), \
                  conntrack and fonts-dejavu-core: `cargo xtask setup` installs them. \
                  Run it as `cargo xtask bench --compare [OPTIONS]`, which builds sgd first.\n\n\
                  Example: cargo xtask bench --compare --rounds 5 --rules 10,1000"
)]
struct Args {
    /// Rounds; each measures every filter at every size once, in an order
    /// rotated from round to round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: u16,
    /// Rule counts, comma-separated (1 to 1000: sg's limit per interface).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    rules: Vec<u16>,
    /// Filters, comma-separated (`none` is always measured: it is the
    /// reference of the ratios).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,sg,iptables,nftables,nftables-set"
    )]
    filters: Vec<Filter>,
    /// Traffics, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "established,new"
    )]
    traffic: Vec<Traffic>,
    /// Seconds of each measurement window.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Seconds trafgen blasts before the window opens.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Where the PNG plot goes.
    #[arg(long, default_value_os_t = default_plot())]
    plot: PathBuf,
    /// Draw no plot.
    #[arg(long)]
    no_plot: bool,
}

fn default_plot() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).join("docs/compare.png")
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sg-compare: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Args) -> Result<()> {
    add_sbin_to_path();
    if !(0.1..=60.0).contains(&args.seconds) || !(0.0..=60.0).contains(&args.warmup) {
        bail!("--seconds takes 0.1 to 60, --warmup 0 to 60");
    }
    if !args.filters.contains(&Filter::None) {
        args.filters.insert(0, Filter::None);
    }
    dedup(&mut args.filters);
    dedup(&mut args.rules);
    args.traffic.sort();
    args.traffic.dedup();
    preflight(&args)?;
    ctrlc::set_handler(|| {
        if !STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsg-compare: interrupted; stopping and removing the namespaces");
        }
    })
    .context("installing the Ctrl-C handler")?;

    let about = about_machine();
    eprintln!("sg-compare: {about}");
    let rounds = usize::from(args.rounds);
    let rules: Vec<usize> = args.rules.iter().map(|&n| usize::from(n)).collect();
    let started = Instant::now();
    let mut samples = Vec::new();
    for round in 0..rounds {
        // Other work on the machine takes CPU time from the sender and the
        // receive path: worth knowing when the figures look odd.
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        eprintln!(
            "sg-compare: round {}/{rounds}, load average {}",
            round + 1,
            load.join(" ")
        );
        for (k, &n) in rules.iter().enumerate() {
            let mut order = args.filters.clone();
            let len = order.len();
            order.rotate_left((round + k) % len);
            // Every filter in namespaces of its own, all set up first, so
            // that the measurements compared follow each other closely.
            let mut setups = Vec::new();
            for filter in order {
                stop_requested()?;
                setups.push(Setup::new(filter, n)?);
            }
            for &traffic in &args.traffic {
                for setup in &mut setups {
                    let pps = setup.measure(traffic, &args)?;
                    let sample = Sample {
                        round,
                        rules: n,
                        filter: setup.filter,
                        traffic,
                        pps,
                    };
                    report(&sample, &samples, rounds);
                    samples.push(sample);
                }
            }
        }
    }
    let summary = Summary::new(&samples, &rules, &args.traffic, &args.filters);
    println!(
        "\nReceive rate through a veth, ratio to no filter in the same round (median of \
         {rounds} rounds, {} s windows; no filter: its median rate); {about}; took {:.0} s\n",
        args.seconds,
        started.elapsed().as_secs_f64()
    );
    println!("{}", summary.markdown());
    if !args.no_plot {
        plot::draw(&summary, &args.plot, &about)?;
        println!("Plot: {}", args.plot.display());
    }
    Ok(())
}

/// One filter with `rules` rules, installed in a pair of namespaces of
/// its own, removed (sgd stopped first) when dropped.
struct Setup {
    // Fields drop in this order: the filter, the socket, the namespaces.
    installed: filters::Installed,
    sink: Sink,
    pair: Pair,
    filter: Filter,
    rules: usize,
}

impl Setup {
    fn new(filter: Filter, rules: usize) -> Result<Setup> {
        let pair = Pair::new()?;
        let sink = Sink::bind(&pair, filters::port(rules))?;
        let installed = filters::install(filter, &pair, rules)
            .with_context(|| format!("installing {} with {rules} rules", filter.label()))?;
        Ok(Setup {
            installed,
            sink,
            pair,
            filter,
            rules,
        })
    }

    /// Blasts `traffic` through the filter and returns the receive rate,
    /// after checking that the filter treated it as intended.
    fn measure(&mut self, traffic: Traffic, args: &Args) -> Result<f64> {
        let (pair, installed) = (&self.pair, &self.installed);
        let port = filters::port(self.rules);
        let what = format!(
            "{} rules, {}, {}",
            self.rules,
            self.filter.label(),
            traffic.label()
        );
        let mut notes = Vec::new();
        if traffic == Traffic::Established {
            self.sink
                .establish(pair, port)
                .with_context(|| format!("{what}: making the flow established"))?;
            notes.push(installed.check_established(pair, port)?);
        }
        let before = installed.decided(pair)?;
        // Far more than a veth carries in that time (about 1.5 Mpps here).
        let max_packets = ((args.warmup + args.seconds + 5.0) * 10e6) as u64;
        let mut blaster = Blaster::start(pair, traffic, port, max_packets)?;
        pause(args.warmup)?;
        blaster.check_running()?;
        let start = Reading::take(&pair.rx)?;
        pause(args.seconds)?;
        let end = Reading::take(&pair.rx)?;
        blaster.check_running()?;
        blaster.stop()?;
        let (pps, packets) = end.rate_since(&start);
        if packets == 0 {
            bail!("{what}: no packet reached the receiver's socket");
        }
        if let (Some(before), Some(after)) = (before, installed.decided(pair)?) {
            notes.push(filters::check_decided(
                self.filter,
                before,
                after,
                traffic == Traffic::Established,
            )?);
        }
        match traffic {
            Traffic::Established => {
                installed
                    .check_established(pair, port)
                    .with_context(|| format!("{what}: after the blast"))?;
            }
            Traffic::New => {
                notes.push(installed.check_new_flows(pair)?);
                installed.forget_flows(pair)?;
            }
        }
        for note in notes.iter().filter(|n| !n.is_empty()) {
            eprintln!("    checked: {note}");
        }
        Ok(pps)
    }
}

/// One progress line, with the ratio when the round's no-filter rate is
/// already known.
fn report(sample: &Sample, earlier: &[Sample], rounds: usize) {
    let base = earlier
        .iter()
        .find(|s| {
            s.round == sample.round
                && s.rules == sample.rules
                && s.traffic == sample.traffic
                && s.filter == Filter::None
        })
        .map(|s| format!(" ({:.2} of no filter)", sample.pps / s.pps))
        .unwrap_or_default();
    eprintln!(
        "[round {}/{rounds}] {} rules, {}, {}: {:.0} kpps{base}",
        sample.round + 1,
        sample.rules,
        sample.filter.label(),
        sample.traffic.label(),
        sample.pps / 1000.0
    );
}

fn dedup<T: PartialEq + Clone>(v: &mut Vec<T>) {
    let mut seen = Vec::new();
    v.retain(|x| {
        let new = !seen.contains(x);
        if new {
            seen.push(x.clone());
        }
        new
    });
}

fn stop_requested() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps `secs`, but returns an error as soon as a stop is requested.
fn pause(secs: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        stop_requested()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// The tools live in /usr/sbin, which a non-login root shell or `sudo`
/// may leave off `PATH`.
fn add_sbin_to_path() {
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&old).collect();
    for dir in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(dir.into());
        }
    }
    if let Ok(path) = std::env::join_paths(dirs) {
        // SAFETY: called at the start of `run`, before any other thread.
        unsafe { std::env::set_var("PATH", path) };
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Fails, saying what to do, unless everything the run needs is there.
fn preflight(args: &Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "sg-compare needs root (it creates network namespaces and loads eBPF); run it as \
             root: `cargo xtask bench --compare`"
        );
    }
    let mut tools = vec![("trafgen", "netsniff-ng"), ("ip", "iproute2")];
    for f in &args.filters {
        tools.extend(f.tools());
    }
    let mut missing: Vec<String> = Vec::new();
    for (cmd, package) in tools {
        let line = format!("{cmd} (Debian package {package})");
        if !on_path(cmd) && !missing.contains(&line) {
            missing.push(line);
        }
    }
    if !args.no_plot && !Path::new(plot::FONT).is_file() {
        missing.push(format!("{} (Debian package fonts-dejavu-core)", plot::FONT));
    }
    if !missing.is_empty() {
        bail!(
            "missing {}: run `cargo xtask setup` as root (or apt-get install the packages)",
            missing.join(", ")
        );
    }
    if args.filters.contains(&Filter::Sg) {
        // Both panic with their explanation when the binary is missing.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let found = std::panic::catch_unwind(|| (sg_tests::sgd_path(), sg_tests::sgctl_path()));
        std::panic::set_hook(hook);
        if found.is_err() {
            bail!(
                "no sgd and sgctl binaries: run this through `cargo xtask bench --compare`, which \
                 builds them, or build them (`cargo build -p sg-daemon`) and name sgd in SGD_BIN"
            );
        }
    }
    Ok(())
}

/// The machine, the date and the versions of the tools: the context every
/// figure needs.
fn about_machine() -> String {
    let first_line = |cmd: &[&str]| -> Option<String> {
        let out = Command::new(cmd[0]).args(&cmd[1..]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Some(text.lines().next()?.trim().to_owned())
    };
    let date = first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut versions = Vec::new();
    for cmd in [&["iptables-nft", "-V"][..], &["nft", "-v"][..]] {
        if let Some(v) = first_line(cmd) {
            versions.push(v);
        }
    }
    if let Some(v) = first_line(&["trafgen", "-v"]) {
        versions.push(v.split(',').next().unwrap_or(&v).to_owned());
    }
    let versions = if versions.is_empty() {
        String::new()
    } else {
        format!(", {}", versions.join(", "))
    };
    format!("{date}, {cpus} CPUs, Linux {kernel}{versions}")
}
