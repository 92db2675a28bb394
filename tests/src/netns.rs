//! Named network namespaces, veth links between them, and ready-made topologies.
//!
//! Every namespace is created with `ip netns add`, so it is visible to `ip`,
//! `ping` and the daemon under a name, and removed again when its [`Netns`]
//! value is dropped, also while a failing test unwinds.

use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every namespace this harness creates; the stale-namespace sweep
/// only ever looks at names carrying it.
const PREFIX: &str = "sgt";

/// The kernel's limit on interface names (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// How long a freshly configured link may take to report `state UP`.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// A uniquely named network namespace, deleted on drop.
///
/// The name is `sgt-<pid>-<counter>-<label>`: the pid keeps parallel test
/// binaries apart, the counter keeps tests of one binary (and repeated
/// namespaces of one test) apart, and the label tells a human which test
/// left it behind if a run is killed before `Drop` can run.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn new(label: &str) -> Result<Netns> {
        static SWEEP: Once = Once::new();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        SWEEP.call_once(sweep_stale);

        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(12)
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}-{}-{n}-{label}", std::process::id());

        // `ip netns add` turns /run/netns into a shared bind mount the first
        // time it runs; two of them racing can stack two such mounts, so
        // creations are serialised across threads and processes.
        let lock = netns_lock()?;
        run(Command::new("ip").args(["netns", "add", &name]))?;
        drop(lock);

        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec NAME cmd...` and returns its stdout; fails with
    /// the command's stderr when it exits non-zero.
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd))
    }

    /// Runs `ip -n NAME args...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace, and
    /// returns its result; a panic in `f` is resumed on the caller's thread.
    ///
    /// A socket belongs to the namespace of the thread that created it, for
    /// its whole life, so sockets made in `f` can be used from any thread
    /// afterwards. The thread is a fresh one, thrown away afterwards, so that
    /// the caller's thread never leaves the host's namespace, not even when
    /// `f` panics.
    pub fn run_in<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        thread::scope(|s| {
            let worker = s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                f()
            });
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Waits until `ifname` in this namespace reports operational state UP.
    ///
    /// Until then the kernel has not activated the device's queueing
    /// discipline and silently drops what is sent through it, which would
    /// turn the first SYN of a test into a spurious timeout.
    pub fn wait_link_up(&self, ifname: &str) -> Result<()> {
        let deadline = Instant::now() + LINK_UP_TIMEOUT;
        loop {
            let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
            if out.contains("state UP") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{ifname} in netns {} is not up after {LINK_UP_TIMEOUT:?}: {out}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Netns {
    /// Kills whatever still runs in the namespace (it can only have been
    /// started by this harness, the name being unique) and deletes it; its
    /// interfaces, and so the veth peers in other namespaces, go with it.
    fn drop(&mut self) {
        kill_members(&self.name);
        if let Err(e) = run(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("sg-tests: cannot delete netns {}: {e:#}", self.name);
        }
    }
}

/// Creates a veth pair from `a_if` in `a` to `b_if` in `b`, gives each end its
/// addresses (CIDR notation; IPv6 ones without duplicate address detection,
/// so they are usable at once) and waits until both ends are up.
pub fn veth_pair(
    a: &Netns,
    a_if: &str,
    a_addrs: &[&str],
    b: &Netns,
    b_if: &str,
    b_addrs: &[&str],
) -> Result<()> {
    for ifname in [a_if, b_if] {
        if ifname.is_empty() || ifname.len() > MAX_IFNAME {
            bail!("interface name {ifname:?} must have 1..={MAX_IFNAME} characters");
        }
    }
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            let mut args = vec!["addr", "add", addr, "dev", ifname];
            if addr.contains(':') {
                args.push("nodad");
            }
            ns.ip(&args)?;
        }
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    a.wait_link_up(a_if)?;
    b.wait_link_up(b_if)
}

/// Interface of the server host in a [`Topology`].
pub const SERVER_IF: &str = "sg0";
/// Interface of each client host in a [`Topology`].
pub const CLIENT_IF: &str = "cl0";

/// A namespace standing for one host with one interface and one IPv4 and one
/// IPv6 address on it.
///
/// It dereferences to its [`Netns`], so a `&Host` can be passed wherever a
/// `&Netns` is expected (`tcp_connect(&t.client(), ...)`).
#[derive(Debug)]
pub struct Host {
    ns: Netns,
    ifname: &'static str,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

impl Host {
    /// Creates the namespace `label`, for an interface `ifname` that the
    /// topology will create with host number `n` (192.0.2.n, 2001:db8::n).
    pub(crate) fn new(label: &str, ifname: &'static str, n: u8) -> Result<Host> {
        Ok(Host {
            ns: Netns::new(label)?,
            ifname,
            ipv4: Ipv4Addr::new(192, 0, 2, n),
            ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into()),
        })
    }

    /// The CIDRs to configure on the host's interface.
    pub(crate) fn cidrs(&self) -> [String; 2] {
        [format!("{}/24", self.ipv4), format!("{}/64", self.ipv6)]
    }

    /// The name of the host's interface.
    pub fn ifname(&self) -> &str {
        self.ifname
    }

    /// The host's IPv4 address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// The host's IPv6 address.
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The host's IPv4 address with `port`.
    pub fn v4(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4), port)
    }

    /// The host's IPv6 address with `port`.
    pub fn v6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.ipv6), port)
    }
}

impl Deref for Host {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// A server host and one or more client hosts on one L2 segment of
/// documentation addresses: the server is 192.0.2.1/24 and 2001:db8::1/64 on
/// [`SERVER_IF`], client `i` (from 0) is 192.0.2.(2+i) and 2001:db8::(2+i)
/// on [`CLIENT_IF`].
///
/// ```no_run
/// # fn main() -> anyhow::Result<()> {
/// use sg_tests::{Topology, TcpServer, assert_tcp_allowed};
/// let t = Topology::pair("web")?;
/// let _srv = TcpServer::start(t.server(), t.server().v4(80))?;
/// assert_tcp_allowed(t.client(), t.server().v4(80));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Topology {
    server: Host,
    clients: Vec<Host>,
    /// The namespace of the bridge joining more than two hosts; kept only
    /// to be deleted with the topology.
    _switch: Option<Netns>,
}

impl Topology {
    /// A server and one client joined by a single veth: the smallest setup,
    /// with nothing between the two interfaces.
    pub fn pair(label: &str) -> Result<Topology> {
        let server = Host::new(&format!("{label}-s"), SERVER_IF, 1)?;
        let client = Host::new(&format!("{label}-c"), CLIENT_IF, 2)?;
        let [s4, s6] = server.cidrs();
        let [c4, c6] = client.cidrs();
        veth_pair(
            &server,
            SERVER_IF,
            &[&s4, &s6],
            &client,
            CLIENT_IF,
            &[&c4, &c6],
        )?;
        Ok(Topology {
            server,
            clients: vec![client],
            _switch: None,
        })
    }

    /// A server and `clients` clients, each with a veth to a Linux bridge in
    /// a separate "switch" namespace, so that the clients share the server's
    /// segment (and the server's interface keeps its name and addresses).
    pub fn lan(label: &str, clients: usize) -> Result<Topology> {
        if !(1..=200).contains(&clients) {
            bail!("a topology takes 1..=200 clients, not {clients}");
        }
        let switch = Netns::new(&format!("{label}-sw"))?;
        add_bridge(&switch, "br0")?;

        let server = Host::new(&format!("{label}-s"), SERVER_IF, 1)?;
        let clients = (0..clients)
            .map(|i| Host::new(&format!("{label}-c{i}"), CLIENT_IF, (i + 2) as u8))
            .collect::<Result<Vec<_>>>()?;
        for (i, host) in std::iter::once(&server).chain(&clients).enumerate() {
            let port = format!("p{i}");
            let [v4, v6] = host.cidrs();
            veth_pair(host, host.ifname, &[&v4, &v6], &switch, &port, &[])?;
            switch.ip(&["link", "set", &port, "master", "br0"])?;
        }
        switch.wait_link_up("br0")?;
        Ok(Topology {
            server,
            clients,
            _switch: Some(switch),
        })
    }

    /// The server host.
    pub fn server(&self) -> &Host {
        &self.server
    }

    /// The first client.
    pub fn client(&self) -> &Host {
        &self.clients[0]
    }

    /// The second client; panics if the topology was built with only one.
    pub fn client2(&self) -> &Host {
        self.clients
            .get(1)
            .expect("client2() needs a topology built with Topology::lan(label, 2 or more)")
    }

    /// All clients, in address order.
    pub fn clients(&self) -> &[Host] {
        &self.clients
    }
}

/// Creates bridge `name` in `ns` and sets it up. Snooping is off: the
/// bridge floods multicast such as IPv6 neighbour solicitations whatever MLD
/// reports it has (not) seen, so the segment behaves like a plain wire.
fn add_bridge(ns: &Netns, name: &str) -> Result<()> {
    ns.ip(&["link", "add", name, "type", "bridge", "mcast_snooping", "0"])?;
    ns.ip(&["link", "set", name, "up"])?;
    Ok(())
}

/// A hypervisor: a "host" namespace with a bridge `br0` and, for each
/// instance, a namespace whose `eth0` is joined by a veth to a port of the
/// bridge in the host namespace. `sgd` runs in the host namespace and
/// enforces on the ports (TC ingress there is the instance's outbound).
#[derive(Debug)]
pub struct Hypervisor {
    host: Netns,
    vms: Vec<Netns>,
}

impl Hypervisor {
    /// One instance per `(port, address)`: `port` names the bridge port (and
    /// the instance's namespace), `address` is the CIDR of its `eth0`.
    pub fn new(label: &str, vms: &[(&str, &str)]) -> Result<Hypervisor> {
        let host = Netns::new(&format!("{label}-h"))?;
        add_bridge(&host, "br0")?;
        let vms = vms
            .iter()
            .map(|(port, addr)| {
                let vm = Netns::new(&format!("{label}-{port}"))?;
                veth_pair(&vm, "eth0", &[addr], &host, port, &[])?;
                host.ip(&["link", "set", port, "master", "br0"])?;
                Ok(vm)
            })
            .collect::<Result<Vec<_>>>()?;
        host.wait_link_up("br0")?;
        Ok(Hypervisor { host, vms })
    }

    /// The host namespace, where the bridge and its ports are.
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// The instances, in the order given.
    pub fn vms(&self) -> &[Netns] {
        &self.vms
    }
}

/// A server, a router and a far host:
/// `server sg0 (192.0.2.1, 2001:db8::1) -- router (192.0.2.254, 2001:db8::fe |
/// 198.51.100.254, 2001:db8:1::fe) -- far f0 (198.51.100.2, 2001:db8:1::2)`,
/// with MTU 1500 on the server's link and 1280 on the far one. The far
/// host's routes back advertise an MSS for a 1500-byte path, so the server's
/// full-sized segments need PMTUD: the router answers them with ICMP
/// "fragmentation needed" / ICMPv6 "packet too big".
#[derive(Debug)]
pub struct NarrowPath {
    pub server: Netns,
    pub router: Netns,
    pub far: Netns,
}

impl NarrowPath {
    pub fn new(label: &str) -> Result<NarrowPath> {
        let server = Netns::new(&format!("{label}-s"))?;
        let router = Netns::new(&format!("{label}-r"))?;
        let far = Netns::new(&format!("{label}-f"))?;
        veth_pair(
            &server,
            SERVER_IF,
            &["192.0.2.1/24", "2001:db8::1/64"],
            &router,
            "r0",
            &["192.0.2.254/24", "2001:db8::fe/64"],
        )?;
        veth_pair(
            &router,
            "r1",
            &["198.51.100.254/24", "2001:db8:1::fe/64"],
            &far,
            "f0",
            &["198.51.100.2/24", "2001:db8:1::2/64"],
        )?;
        router.ip(&["link", "set", "r1", "mtu", "1280"])?;
        far.ip(&["link", "set", "f0", "mtu", "1280"])?;
        router.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ])?;
        server.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"])?;
        server.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8::fe",
        ])?;
        for (family, net, via, mss) in [
            ("-4", "192.0.2.0/24", "198.51.100.254", "1460"),
            ("-6", "2001:db8::/64", "2001:db8:1::fe", "1440"),
        ] {
            far.ip(&[family, "route", "add", net, "via", via, "advmss", mss])?;
        }
        Ok(NarrowPath {
            server,
            router,
            far,
        })
    }
}

/// Runs a command and returns its stdout, or an error with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Takes the machine-wide lock that serialises `ip netns add`.
fn netns_lock() -> Result<Flock<File>> {
    let path = std::env::temp_dir().join("sg-tests-netns.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("flock {}", path.display()))
}

/// SIGKILLs every process in namespace `name` except this one.
fn kill_members(name: &str) {
    let Ok(pids) = run(Command::new("ip").args(["netns", "pids", name])) else {
        return;
    };
    let me = std::process::id();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        if pid != me {
            // It may have exited meanwhile; nothing else can go wrong for root.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Deletes namespaces that a killed earlier run left behind: those whose
/// creating process no longer exists, and those carrying this process's own
/// pid (reused from a dead run: this process has created none yet). Without
/// it a reused pid would make `ip netns add` fail with "File exists".
fn sweep_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    let me = std::process::id();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(PREFIX) {
            continue;
        }
        let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let dead = kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH);
        if pid == me || dead {
            kill_members(name);
            let _ = run(Command::new("ip").args(["netns", "delete", name]));
        }
    }
}
