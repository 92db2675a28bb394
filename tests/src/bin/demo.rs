//! `cargo xtask demo`: sgd enforcing the seeds' web-server group in a
//! sandbox. Two namespaces (server and client) are joined by a veth; the
//! server runs `sgd --config examples/web-server.toml` (bound to its veth)
//! and listens on 22, 80 and 443; once a second the client tries each port
//! and a ping, and the server opens a connection out. Everything is removed
//! on Ctrl-C, on error, or after `--rounds N`. The host's own interfaces are
//! never touched.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sg_tests::{DaemonDirs, Netns, Outcome, Sgd, TcpServer, Topology, ping, tcp_connect};

const EXAMPLE: &str = include_str!("../../../examples/web-server.toml");
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

fn main() -> anyhow::Result<()> {
    let rounds = parse_rounds()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }

    println!("Setting up the sandbox (network namespaces joined by a veth)...");
    let t = Topology::pair("demo")?;
    let (server, client) = (t.server(), t.client());
    let mut listeners = Vec::new();
    for port in [22, 80, 443] {
        listeners.push(TcpServer::start(server, server.v4(port))?);
        listeners.push(TcpServer::start(server, server.v6(port))?);
    }
    let _outside = TcpServer::start(client, client.v4(8080))?;

    let dirs = DaemonDirs::new()?;
    let config = demo_config(&dirs, server.ifname());
    println!(
        "Server {} / {} (namespace {}), client {} / {} (namespace {}).",
        server.ipv4(),
        server.ipv6(),
        server.name(),
        client.ipv4(),
        client.ipv6(),
        client.name()
    );
    println!(
        "Starting sgd with examples/web-server.toml bound to {}:",
        server.ifname()
    );
    println!("  HTTP and HTTPS open to all; everything else inbound closed;");
    println!("  outbound open (basic group default), replies come back by session.\n");
    let sgd = Sgd::start(server, &config)?;
    println!(
        "sgd is enforcing (config: {}).",
        sgd.config_path().display()
    );
    println!("Press Ctrl-C to stop and remove everything.\n");

    let probes: Vec<(String, Probe)> = vec![
        (
            format!("client -> server tcp/80   {}", server.v4(80)),
            Probe::Tcp(client, server.v4(80)),
        ),
        (
            format!("client -> server tcp/443  {}", server.v4(443)),
            Probe::Tcp(client, server.v4(443)),
        ),
        (
            format!("client -> server tcp/80   {}", server.v6(80)),
            Probe::Tcp(client, server.v6(80)),
        ),
        (
            format!("client -> server tcp/22   {}", server.v4(22)),
            Probe::Tcp(client, server.v4(22)),
        ),
        (
            format!("client -> server ping     {}", server.ipv4()),
            Probe::Ping(client, server.ipv4().into()),
        ),
        (
            format!("server -> client tcp/8080 {}", client.v4(8080)),
            Probe::Tcp(server, client.v4(8080)),
        ),
    ];
    let started = Instant::now();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) && rounds.is_none_or(|r| round < r) {
        round += 1;
        println!("-- round {round} ({}s)", started.elapsed().as_secs());
        for (label, probe) in &probes {
            let (passed, detail) = probe.run();
            let mark = if passed { "PASS   " } else { "DROPPED" };
            println!("   {mark} {label}  {detail}");
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("\nStopping sgd and removing the sandbox...");
    drop(sgd);
    drop(listeners);
    drop(t);
    println!("Done.");
    Ok(())
}

enum Probe<'a> {
    Tcp(&'a Netns, SocketAddr),
    Ping(&'a Netns, IpAddr),
}

impl Probe<'_> {
    fn run(&self) -> (bool, &'static str) {
        match self {
            Probe::Tcp(ns, dst) => match tcp_connect(ns, *dst, PROBE_TIMEOUT) {
                Outcome::Connected => (true, "(connected)"),
                Outcome::Refused => (true, "(reached, refused)"),
                _ => (false, "(no answer: dropped)"),
            },
            Probe::Ping(ns, dst) => {
                if ping(ns, *dst, Duration::from_secs(1)) {
                    (true, "(echo reply)")
                } else {
                    (false, "(no reply: dropped)")
                }
            }
        }
    }
}

/// The example file, bound to the sandbox's interface and pointed at
/// private state, runtime and bpffs directories.
fn demo_config(dirs: &DaemonDirs, ifname: &str) -> String {
    EXAMPLE
        .replace("name = \"eth0\"", &format!("name = {ifname:?}"))
        .replace("\"/var/lib/sg\"", &format!("{:?}", dirs.state_dir()))
        .replace("\"/run/sg\"", &format!("{:?}", dirs.runtime_dir()))
        .replace("\"/sys/fs/bpf/sg\"", &format!("{:?}", dirs.bpffs_dir()))
}

/// `--rounds N` ends the demo after N rounds (for scripts and tests).
fn parse_rounds() -> anyhow::Result<Option<u32>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(None),
        [flag, n] if flag == "--rounds" => Ok(Some(n.parse().context("--rounds takes a number")?)),
        _ => anyhow::bail!("usage: sg-demo [--rounds N]"),
    }
}
