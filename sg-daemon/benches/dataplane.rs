//! `cargo bench -p sg-daemon --bench dataplane` (as root; `cargo xtask bench`).
//!
//! A benchmark, not a test: it prints figures and checks only that each
//! probe packet is decided the way the benchmark intends. From one run:
//!
//! 1. per-packet cost through `BPF_PROG_TEST_RUN` at 10, 100 and 1000 rules
//!    per interface, for new flows (fully classified every repetition) and
//!    established flows (a session hit), measured in interleaved rounds;
//! 2. compile (and install) time of a 1000-rule interface;
//! 3. the growth of the kernel maps' memory when one 1000-rule interface is
//!    installed (`memlock` in `/proc/self/fdinfo`);
//! 4. compile time of 20 rules that reference one 6,000-member group.
//!
//! Nothing is attached anywhere: a test run's skb carries ifindex 1 (`lo`),
//! and each ruleset is installed for ifindex 1 in its own copy of the maps.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use ipnet::IpNet;

// ---------------------------------------------------------------------------
// The adapter: every call into sg_daemon's API is in this module, so that a
// change of its signatures (e.g. `build_table` gaining a parameter) is fixed
// here and nowhere else.
// ---------------------------------------------------------------------------
#[path = "scale/memory.rs"]
mod memory;

mod sg {
    use std::{
        net::IpAddr,
        path::Path,
        time::{Duration, Instant},
    };

    use aya::programs::{TestRun, TestRunOptions};
    pub use sg_common::Reason;
    use sg_daemon::{
        compile::{CompiledTable, Fields, Table, build_table, compile},
        config,
        daemon::compile_binding,
        dataplane::Dataplane,
        model::{Addresses, Config, Direction},
        reference::Interface,
        verify::verify,
    };

    pub use sg_daemon::dataplane::Hook;

    /// Ifindex of `lo`, which every test run's skb carries.
    pub const LOOPBACK_IFINDEX: u32 = 1;

    pub struct Ruleset(Config);

    /// Inbound and outbound tables in the kernel's form.
    pub struct Compiled([CompiledTable; 2]);

    pub struct Kernel(Dataplane);

    impl Ruleset {
        pub fn parse(toml: &str) -> Ruleset {
            Ruleset(config::parse(Path::new("bench.toml"), toml).unwrap_or_else(|e| panic!("{e}")))
        }

        /// The ordered rule lists of the first interface (inbound, outbound).
        /// The only call of `build_table`. No instance address is read from
        /// the host: groups have only their listed members.
        fn tables(&self) -> [Table; 2] {
            let addresses = Addresses::resolve(&self.0, |_| Vec::new());
            Direction::BOTH.map(|dir| build_table(&self.0, &self.0.interfaces[0], &addresses, dir))
        }

        /// `build_table` + `compile` for both directions.
        pub fn compile(&self) -> Compiled {
            self.compile_timed().0
        }

        /// The same, with the time taken by `build_table`, by `compile`
        /// and by the check against the reference that `sgd` runs before
        /// applying.
        pub fn compile_timed(&self) -> (Compiled, Duration, Duration, Duration) {
            let start = Instant::now();
            let tables = self.tables();
            let built = start.elapsed();
            let compiled = tables.clone().map(|t| compile(&t).expect("compile"));
            let compiled_at = start.elapsed();
            let addresses = Addresses::resolve(&self.0, |_| Vec::new());
            let iface = Interface {
                config: &self.0,
                binding: &self.0.interfaces[0],
                addresses: &addresses,
            };
            for ((dir, table), c) in Direction::BOTH.iter().zip(&tables).zip(&compiled) {
                verify(&iface, *dir, table, c).expect("compiled tables agree with the reference");
            }
            let verified = start.elapsed() - compiled_at;
            (Compiled(compiled), built, compiled_at - built, verified)
        }

        /// What `sgd` does before installing: both directions compiled and
        /// checked against the reference, in parallel.
        pub fn compile_checked(&self) -> Compiled {
            let addresses = Addresses::resolve(&self.0, |_| Vec::new());
            let tables = compile_binding(&self.0, &self.0.interfaces[0], &addresses)
                .expect("compile and verify");
            Compiled(tables)
        }

        /// Rules per direction (inbound, outbound).
        pub fn rule_counts(&self) -> [usize; 2] {
            self.tables().map(|t| t.rules.len())
        }

        /// Index in the ordered inbound list of the rule that decides an
        /// inbound packet (user-space first-match scan), if any.
        pub fn inbound_deciding_rule(
            &self,
            proto: u8,
            (remote, src_port): (IpAddr, u16),
            (local, dst_port): (IpAddr, u16),
        ) -> Option<usize> {
            let [inbound, _] = self.tables();
            inbound.first_match(&Fields {
                proto,
                src_port,
                dst_port,
                remote,
                local,
            })
        }

        pub fn load(&self) -> Kernel {
            let mut dataplane = Dataplane::load(&self.0.daemon).expect("load the eBPF program");
            // Test runs are synchronous: nothing uses switched-out tables.
            dataplane.set_grace(Duration::ZERO);
            Kernel(dataplane)
        }
    }

    /// The floor: `sg_tc_floor`, a classifier of the same object that
    /// returns at once, loaded the same way (its own copy of the object's
    /// maps, which it does not use).
    pub struct Floor(aya::Ebpf);

    impl Floor {
        pub fn load() -> Floor {
            let mut ebpf = aya::Ebpf::load(sg_daemon::dataplane::EBPF_OBJECT).expect("load object");
            let prog: &mut aya::programs::SchedClassifier = ebpf
                .program_mut(sg_common::maps::programs::FLOOR)
                .expect("floor program")
                .try_into()
                .expect("a classifier");
            prog.load().expect("load the floor program");
            Floor(ebpf)
        }

        /// Runs `frame` `repeat` times: the kernel's average duration.
        pub fn run(&self, frame: &[u8], repeat: u32) -> Duration {
            let prog: &aya::programs::SchedClassifier = self
                .0
                .program(sg_common::maps::programs::FLOOR)
                .expect("floor program")
                .try_into()
                .expect("a classifier");
            prog.test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN")
            .duration
        }
    }

    impl Compiled {
        /// Entries written to SG_PROTO, SG_ADDR and SG_PORT (both directions).
        pub fn entries(&self) -> [(&'static str, usize); 3] {
            let sum = |f: fn(&CompiledTable) -> usize| self.0.iter().map(f).sum();
            [
                (sg_common::maps::PROTO, sum(|t| t.proto.len())),
                (sg_common::maps::ADDR, sum(|t| t.addr.len())),
                (sg_common::maps::PORT, sum(|t| t.port.len())),
            ]
        }
    }

    impl Kernel {
        /// Switches `lo` to these tables (`Dataplane::install`).
        pub fn install(&mut self, compiled: &Compiled) {
            self.install_on(LOOPBACK_IFINDEX, compiled);
        }

        pub fn install_on(&mut self, ifindex: u32, compiled: &Compiled) {
            let [inbound, outbound] = &compiled.0;
            self.0
                .install(ifindex, 0, [inbound, outbound])
                .expect("install tables");
        }

        /// Frees switched-out tables (`sgd` does it a second after a
        /// change, off the apply path).
        pub fn collect_garbage(&mut self) {
            self.0.collect_garbage().expect("free old tables");
        }

        /// Instructions the verifier walked to load the hook's program.
        pub fn verified_instructions(&self, hook: Hook) -> u32 {
            self.0
                .program(hook)
                .expect("program")
                .info()
                .ok()
                .and_then(|i| i.verified_instruction_count())
                .unwrap_or(0)
        }

        /// Runs `frame` `repeat` times through a hook: the kernel's average
        /// duration per repetition, and the reason counters that moved (with
        /// how much).
        pub fn run(&self, hook: Hook, frame: &[u8], repeat: u32) -> (Duration, Vec<(Reason, u64)>) {
            let before = self.0.stats().expect("read SG_STATS");
            let result = self
                .0
                .program(hook)
                .expect("program")
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat,
                    ..TestRunOptions::default()
                })
                .expect("BPF_PROG_TEST_RUN");
            let after = self.0.stats().expect("read SG_STATS");
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| a.1 != b.1)
                .map(|(b, a)| (a.0, a.1 - b.1))
                .collect();
            (result.duration, moved)
        }
    }
}

use sg::{Hook, Reason};

// ---------------------------------------------------------------------------
// Parameters.
// ---------------------------------------------------------------------------

const RULE_COUNTS: [usize; 3] = [10, 100, 1000];
/// Interleaved rounds; each cell is the median over them.
const ROUNDS: usize = 31;
/// Repetitions of one packet inside one `BPF_PROG_TEST_RUN`.
const REPEAT: u32 = 50_000;
/// Runs of the compile/install timing.
const COMPILE_RUNS: usize = 21;
const SEED: u64 = 0x5eed_5eed_0000_0001;
const NEW_FLOW_TARGET: f64 = 1.25;
/// Per-packet cost above the floor (an empty classifier), ns.
const ESTABLISHED_ABOVE_FLOOR: f64 = 100.0;
const NEW_FLOW_ABOVE_FLOOR: f64 = 250.0;
const COMPILE_TARGET_MS: f64 = 20.0;
const MEMORY_TARGET: u64 = 2 << 20;
/// The group-reference timing: rules referencing one group of members.
const REFERENCING_RULES: usize = 20;
const REFERENCED_MEMBERS: usize = 6_000;
const GROUP_COMPILE_TARGET_MS: f64 = 100.0;
/// Ifindexes of the interfaces the compile timing installs fresh tables
/// for (no such interface needs to exist: nothing is attached).
const FRESH_IFINDEX: u32 = 1000;

// The addresses of the probe packets. Random rules are redrawn while they
// would decide a probe, so each probe reaches the rule meant for it.
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Inbound TCP to `LAST_PORT` from here is dropped by a rule at the end.
const LAST_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
const LAST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x77);
const LAST_PORT: u16 = 5432;
/// Inbound TCP to `FIRST_PORT` from here is dropped by the first rule.
const FIRST_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 88);
const FIRST_PORT: u16 = 23;
/// Outbound TCP to this peer is accepted by the default and opens the
/// session whose replies are the established probe.
const PEER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
const PEER_PORT: u16 = 443;
const LOCAL_PORT: u16 = 40001;
/// Source port of the inbound new-flow probes.
const REMOTE_PORT: u16 = 40000;

// ---------------------------------------------------------------------------
// Random rulesets.
// ---------------------------------------------------------------------------

/// SplitMix64: small, fixed-seed, the same on every machine and version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    /// Index into `weights`, drawn in proportion to them.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        unreachable!()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Ingress,
    Egress,
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    All,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::All => "all",
        }
    }

    fn number(self) -> Option<u8> {
        match self {
            Proto::Tcp => Some(TCP),
            Proto::Udp => Some(UDP),
            Proto::Icmp => Some(1),
            Proto::Icmpv6 => Some(58),
            Proto::All => None,
        }
    }
}

struct Rule {
    accept: bool,
    priority: u8,
    proto: Proto,
    /// Inclusive; `None` for `-1/-1`.
    ports: Option<(u16, u16)>,
    remote: IpNet,
}

impl Rule {
    fn matches(&self, proto: u8, port: u16, remote: IpAddr) -> bool {
        self.proto.number().is_none_or(|p| p == proto)
            && self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&port))
            && self.remote.contains(&remote)
    }

    fn toml(&self, dir: Dir, out: &mut String) {
        let (table, remote) = match dir {
            Dir::Ingress => ("ingress", "source_cidr_ip"),
            Dir::Egress => ("egress", "dest_cidr_ip"),
        };
        let ports = match self.ports {
            Some((lo, hi)) => format!("{lo}/{hi}"),
            None => "-1/-1".into(),
        };
        out.push_str(&format!(
            "  [[security_group.{table}]]\n  policy = \"{}\"\n  priority = {}\n  \
             ip_protocol = \"{}\"\n  port_range = \"{ports}\"\n  {remote} = \"{}\"\n",
            if self.accept { "accept" } else { "drop" },
            self.priority,
            self.proto.name(),
            // The network: the file refuses host bits.
            self.remote.trunc(),
        ));
    }
}

fn random_v4(rng: &mut Rng) -> IpNet {
    let len = [0, 8, 12, 16, 20, 24, 28, 32][rng.weighted(&[4, 4, 6, 10, 6, 30, 10, 30])];
    let addr = match rng.below(4) {
        0 => 0x0a00_0000 | rng.below(1 << 24) as u32,    // 10/8
        1 => 0xac10_0000 | rng.below(1 << 20) as u32,    // 172.16/12
        2 => 0xc0a8_0000 | rng.below(1 << 16) as u32,    // 192.168/16
        _ => rng.range(0x0100_0000, 0xdfff_ffff) as u32, // unicast
    };
    IpNet::new(IpAddr::V4(addr.into()), len).unwrap().trunc()
}

fn random_v6(rng: &mut Rng) -> IpNet {
    let len = [0, 32, 48, 56, 64, 128][rng.weighted(&[4, 8, 20, 15, 33, 20])];
    let high = match rng.below(3) {
        0 => 0x2001_0db8_0000_0000 | rng.below(1 << 32), // 2001:db8::/32
        1 => 0xfd00_0000_0000_0000 | rng.below(1 << 56), // ULA
        _ => 0x2000_0000_0000_0000 | rng.below(1 << 61), // 2000::/3
    };
    let addr = ((high as u128) << 64) | rng.next() as u128;
    IpNet::new(IpAddr::V6(addr.into()), len).unwrap().trunc()
}

fn random_ports(rng: &mut Rng) -> (u16, u16) {
    const COMMON: [u16; 16] = [
        22, 25, 53, 80, 110, 123, 143, 443, 465, 993, 1433, 3306, 3389, 5432, 6379, 8080,
    ];
    match rng.weighted(&[50, 20, 30]) {
        0 => {
            let p = rng.pick(&COMMON);
            (p, p)
        }
        1 => {
            let p = rng.range(1024, 65535) as u16;
            (p, p)
        }
        _ => match rng.below(5) {
            0 => (1, 65535),
            1 => (1024, 65535),
            2 => (30000, 32767),
            _ => {
                let lo = rng.range(1, 60000);
                (lo as u16, rng.range(lo, (lo + 2000).min(65535)) as u16)
            }
        },
    }
}

fn random_rule(rng: &mut Rng) -> Rule {
    let proto = [
        Proto::Tcp,
        Proto::Udp,
        Proto::Icmp,
        Proto::Icmpv6,
        Proto::All,
    ][rng.weighted(&[45, 20, 10, 5, 20])];
    let v6 = match proto {
        Proto::Icmp => false,
        Proto::Icmpv6 => true,
        _ => rng.below(10) < 3,
    };
    Rule {
        accept: rng.below(10) < 7,
        priority: rng.range(1, 100) as u8,
        proto,
        ports: matches!(proto, Proto::Tcp | Proto::Udp).then(|| random_ports(rng)),
        remote: if v6 { random_v6(rng) } else { random_v4(rng) },
    }
}

/// The packets random rules must not decide: (direction, protocol, port,
/// remote address).
fn reserved() -> [(Dir, u8, u16, IpAddr); 3] {
    [
        (Dir::Ingress, TCP, LAST_PORT, LAST_V4.into()),
        (Dir::Ingress, TCP, LAST_PORT, LAST_V6.into()),
        (Dir::Egress, TCP, PEER_PORT, PEER_V4.into()),
    ]
}

/// A config with `total` rules on `lo` (half inbound, half outbound, as
/// SPEC §4 counts them), spread over up to 10 basic groups.
fn ruleset_toml(total: usize, rng: &mut Rng) -> String {
    let first = Rule {
        accept: false,
        priority: 1,
        proto: Proto::Tcp,
        ports: Some((FIRST_PORT, FIRST_PORT)),
        remote: IpNet::new(FIRST_V4.into(), 32).unwrap(),
    };
    let last = |remote: IpAddr, len| Rule {
        accept: false,
        priority: 100,
        proto: Proto::Tcp,
        ports: Some((LAST_PORT, LAST_PORT)),
        remote: IpNet::new(remote, len).unwrap(),
    };
    let specials = [last(LAST_V4.into(), 24), last(LAST_V6.into(), 48)];
    let mut draw = |dir: Dir, n: usize| -> Vec<Rule> {
        (0..n)
            .map(|_| {
                loop {
                    let r = random_rule(rng);
                    let hits = reserved()
                        .iter()
                        .any(|&(d, proto, port, ip)| d == dir && r.matches(proto, port, ip));
                    if !hits {
                        break r;
                    }
                }
            })
            .collect()
    };
    let half = total / 2;
    let mut ingress = vec![first];
    ingress.extend(draw(Dir::Ingress, half - 1 - specials.len()));
    ingress.extend(specials);
    let egress = draw(Dir::Egress, total - half);

    let groups = (total / 100).clamp(1, 10);
    let chunk = |rules: &[Rule], g: usize| {
        let per = rules.len().div_ceil(groups);
        rules.len().min(g * per)..rules.len().min((g + 1) * per)
    };
    let mut toml = String::new();
    for g in 0..groups {
        toml.push_str(&format!(
            "[[security_group]]\nid = \"sg-bench-{g}\"\ninner_access_policy = \"drop\"\n"
        ));
        for r in &ingress[chunk(&ingress, g)] {
            r.toml(Dir::Ingress, &mut toml);
        }
        for r in &egress[chunk(&egress, g)] {
            r.toml(Dir::Egress, &mut toml);
        }
    }
    let ids: Vec<String> = (0..groups).map(|g| format!("\"sg-bench-{g}\"")).collect();
    toml.push_str(&format!(
        "[[interface]]\nname = \"lo\"\nsecurity_groups = [{}]\n",
        ids.join(", ")
    ));
    toml
}

/// One group of `REFERENCED_MEMBERS` addresses, referenced by each of
/// `REFERENCING_RULES` rules of the group bound to `lo`.
fn group_reference_toml() -> String {
    let members: Vec<String> = (0..REFERENCED_MEMBERS)
        .map(|i| format!("\"10.{}.{}.{}\"", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let mut toml = format!(
        "[[security_group]]\nid = \"sg-big\"\nmembers = [{}]\n\n[[security_group]]\nid = \"sg-web\"\n",
        members.join(", ")
    );
    for i in 0..REFERENCING_RULES {
        toml.push_str(&format!(
            "[[security_group.ingress]]\npolicy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"{0}/{0}\"\nsource_group_id = \"sg-big\"\n",
            8000 + i
        ));
    }
    toml + "[[interface]]\nname = \"lo\"\nsecurity_groups = [\"sg-web\"]\n"
}

/// Section 4: build_table, compile and verify of the group-reference
/// ruleset, each the median of `COMPILE_RUNS` runs, ms.
fn group_reference_timing() -> [f64; 3] {
    let ruleset = sg::Ruleset::parse(&group_reference_toml());
    let mut timings: [Vec<f64>; 3] = Default::default();
    for _ in 0..COMPILE_RUNS {
        let (_, built, compiled, verified) = ruleset.compile_timed();
        for (v, d) in timings.iter_mut().zip([built, compiled, verified]) {
            v.push(ms(d));
        }
    }
    timings.map(median)
}

// ---------------------------------------------------------------------------
// Frames (after tests/src/frames.rs; checksums zero, the classifier never
// reads them).
// ---------------------------------------------------------------------------

const TCP: u8 = 6;
const UDP: u8 = 17;

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    tcp(sport, dport, SYN)
}

fn ip_frame(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4.len()) as u16;
            let mut p = vec![0x45, 0];
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(l4);
            ethernet(0x0800, &p)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0x60, 0, 0, 0];
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(l4);
            ethernet(0x86dd, &p)
        }
        _ => panic!("mixed address families"),
    }
}

fn arp_request() -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x02];
    p.extend_from_slice(&FIRST_V4.octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&SERVER_V4.octets());
    ethernet(0x0806, &p)
}

// ---------------------------------------------------------------------------
// Probes and measurement.
// ---------------------------------------------------------------------------

struct Probe {
    label: &'static str,
    hook: Hook,
    frame: Vec<u8>,
    reason: Reason,
}

fn probes() -> Vec<Probe> {
    let syn_in =
        |from: IpAddr, to: IpAddr, port| ip_frame(from, to, TCP, &tcp_syn(REMOTE_PORT, port));
    vec![
        Probe {
            label: "new, last rule v4",
            hook: Hook::Ingress,
            frame: syn_in(LAST_V4.into(), SERVER_V4.into(), LAST_PORT),
            reason: Reason::RuleDrop,
        },
        Probe {
            label: "new, last rule v6",
            hook: Hook::Ingress,
            frame: syn_in(LAST_V6.into(), SERVER_V6.into(), LAST_PORT),
            reason: Reason::RuleDrop,
        },
        Probe {
            label: "new, first rule",
            hook: Hook::Ingress,
            frame: syn_in(FIRST_V4.into(), SERVER_V4.into(), FIRST_PORT),
            reason: Reason::RuleDrop,
        },
        Probe {
            label: "established",
            hook: Hook::Ingress,
            frame: ip_frame(
                PEER_V4.into(),
                SERVER_V4.into(),
                TCP,
                &tcp(PEER_PORT, LOCAL_PORT, ACK),
            ),
            reason: Reason::Session,
        },
        Probe {
            label: "non-IP (ARP)",
            hook: Hook::Ingress,
            frame: arp_request(),
            reason: Reason::NotIp,
        },
    ]
}
/// Indexes in `probes()`.
const NEW_FLOWS: [usize; 3] = [0, 1, 2];
const ESTABLISHED: usize = 3;

/// One measurement: average ns per packet over `REPEAT` repetitions, after
/// checking that every repetition was decided by the probe's reason.
fn measure(kernel: &sg::Kernel, probe: &Probe) -> f64 {
    let (avg, moved) = kernel.run(probe.hook, &probe.frame, REPEAT);
    assert_eq!(
        moved,
        vec![(probe.reason, REPEAT as u64)],
        "{}: decided otherwise",
        probe.label
    );
    avg.as_nanos() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn main() {
    if !is_root() {
        eprintln!("the dataplane benchmark loads eBPF programs: run it as root");
        std::process::exit(1);
    }
    let started = Instant::now();
    let mut rng = Rng(SEED);
    let rulesets: Vec<sg::Ruleset> = RULE_COUNTS
        .iter()
        .map(|&n| sg::Ruleset::parse(&ruleset_toml(n, &mut rng)))
        .collect();
    let big = &rulesets[RULE_COUNTS.len() - 1];
    println!(
        "sg dataplane benchmark: kernel {}, {} CPUs, seed {SEED:#x}",
        kernel_release(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // --- 4. Compile time of rules referencing a large group. ---
    let referencing = group_reference_timing();

    // --- 3. Map memory of one 1000-rule interface (fresh maps). ---
    let mut kernel = big.load();
    let compiled = big.compile();
    let before = memory::memlock_by_id();
    kernel.install(&compiled);
    let after = memory::memlock_by_id();
    let mut grown: Vec<(String, u64, u64)> = after
        .iter()
        .filter_map(|(id, &a)| {
            let b = *before.get(id)?;
            (a != b).then(|| {
                let name = aya::maps::MapInfo::from_id(*id)
                    .ok()
                    .and_then(|i| i.name_as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("map {id}"));
                (name, b, a)
            })
        })
        .collect();
    grown.sort();
    let memory: u64 = grown.iter().map(|(_, b, a)| a - b).sum();

    // --- 2. Compile and install time at 1000 rules. ---
    // Per run: build_table, compile, verify (each timed alone), then what
    // sgd does (compile and verify in parallel) and two installs: one for a
    // new interface (a first apply), one replacing lo's tables (a reload).
    // The tables a reload switched away from are freed afterwards, off the
    // apply path, as sgd does a second later; that is timed on its own.
    let mut fresh_kernel = big.load();
    kernel.install(&compiled);
    let mut timings: [Vec<f64>; 8] = Default::default();
    for run in 0..COMPILE_RUNS {
        let (_, built, compiled_in, verified) = big.compile_timed();
        let start = Instant::now();
        let compiled = big.compile_checked();
        let t1 = Instant::now();
        fresh_kernel.install_on(FRESH_IFINDEX + run as u32, &compiled);
        let t2 = Instant::now();
        kernel.install(&compiled);
        let t3 = Instant::now();
        kernel.collect_garbage();
        let t4 = Instant::now();
        let compile = t1 - start;
        for (v, d) in timings.iter_mut().zip([
            built,
            compiled_in,
            verified,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            compile + (t2 - t1),
            compile + (t3 - t2),
        ]) {
            v.push(ms(d));
        }
    }
    drop((kernel, fresh_kernel));

    // --- 1. Per-packet cost. ---
    let probes = probes();
    // The handshake of the established probe's session: out SYN, in
    // SYN-ACK, out ACK (established, in the answered table).
    let handshake = [
        (
            Hook::Egress,
            ip_frame(
                SERVER_V4.into(),
                PEER_V4.into(),
                TCP,
                &tcp_syn(LOCAL_PORT, PEER_PORT),
            ),
            Reason::DefaultAccept,
        ),
        (
            Hook::Ingress,
            ip_frame(
                PEER_V4.into(),
                SERVER_V4.into(),
                TCP,
                &tcp(PEER_PORT, LOCAL_PORT, SYN | ACK),
            ),
            Reason::Session,
        ),
        (
            Hook::Egress,
            ip_frame(
                SERVER_V4.into(),
                PEER_V4.into(),
                TCP,
                &tcp(LOCAL_PORT, PEER_PORT, ACK),
            ),
            Reason::Session,
        ),
    ];
    let kernels: Vec<sg::Kernel> = rulesets
        .iter()
        .map(|rs| {
            let mut k = rs.load();
            k.install(&rs.compile());
            for (hook, frame, reason) in &handshake {
                let (_, moved) = k.run(*hook, frame, 1);
                assert_eq!(moved, vec![(*reason, 1)], "session handshake");
            }
            for p in &probes {
                measure(&k, p); // warm-up and check
            }
            k
        })
        .collect();
    println!(
        "verified instructions: ingress {}, egress {}",
        kernels[0].verified_instructions(Hook::Ingress),
        kernels[0].verified_instructions(Hook::Egress)
    );
    let floor = sg::Floor::load();
    let floor_frame = &probes[ESTABLISHED].frame;
    // samples[size][probe][round]; the last probe index is the floor.
    let mut samples = vec![vec![Vec::with_capacity(ROUNDS); probes.len() + 1]; RULE_COUNTS.len()];
    for round in 0..ROUNDS {
        // The probes, then the floor (`None`).
        for (p, probe) in probes.iter().map(Some).chain([None]).enumerate() {
            // The sizes back to back, so that the cells compared in a ratio
            // are measured milliseconds apart; the order rotates so that no
            // size is always first. The floor runs in each size's turn too.
            for i in 0..RULE_COUNTS.len() {
                let s = (i + round) % RULE_COUNTS.len();
                let ns = match probe {
                    Some(probe) => measure(&kernels[s], probe),
                    None => floor.run(floor_frame, REPEAT).as_nanos() as f64,
                };
                samples[s][p].push(ns);
            }
        }
    }
    drop(kernels);
    let floor_at = probes.len();

    // --- Report. ---
    println!(
        "\nper packet, BPF_PROG_TEST_RUN on the ingress program, ns \
         (median of {ROUNDS} interleaved rounds of {REPEAT} repetitions)"
    );
    print!("{:>6} {:>9}", "rules", "in/out");
    for p in &probes {
        print!(" {:>18}", p.label);
    }
    println!(" {:>18}", "floor");
    for (s, (&n, rs)) in RULE_COUNTS.iter().zip(&rulesets).enumerate() {
        let [inb, outb] = rs.rule_counts();
        print!("{n:>6} {:>9}", format!("{inb}/{outb}"));
        for cells in &samples[s] {
            print!(" {:>18.1}", median(cells.clone()));
        }
        println!();
    }
    let last = RULE_COUNTS.len() - 1;
    // Paired per round, then the median: noise common to a round cancels.
    let ratio = |p: usize| {
        median(
            (0..ROUNDS)
                .map(|r| samples[last][p][r] / samples[0][p][r])
                .collect(),
        )
    };
    print!(
        "{:>16}",
        format!("{}/{}", RULE_COUNTS[last], RULE_COUNTS[0])
    );
    for p in 0..=probes.len() {
        print!(" {:>17.2}x", ratio(p));
    }
    println!();
    // Above the floor: per round, the probe minus the floor measured in
    // the same round at the same size; the median of those.
    let above = |s: usize, p: usize| {
        median(
            (0..ROUNDS)
                .map(|r| samples[s][p][r] - samples[s][floor_at][r])
                .collect(),
        )
    };
    println!("above the floor (median of per-round differences), ns");
    for (s, &n) in RULE_COUNTS.iter().enumerate() {
        print!("{n:>16}");
        for p in 0..probes.len() {
            print!(" {:>18.1}", above(s, p));
        }
        println!();
    }
    let deciding: Vec<String> = rulesets
        .iter()
        .zip(RULE_COUNTS)
        .map(|(rs, n)| {
            let at = rs
                .inbound_deciding_rule(
                    TCP,
                    (LAST_V4.into(), REMOTE_PORT),
                    (SERVER_V4.into(), LAST_PORT),
                )
                .map_or("none".into(), |i| i.to_string());
            format!("{at} of {} at {n}", rs.rule_counts()[0])
        })
        .collect();
    println!(
        "(the v4 last-rule probe is decided by inbound rule index {}; \
         ratio = median of per-round ratios)",
        deciding.join(", ")
    );
    // The target holds for every new-flow probe, so the worst one decides.
    let (worst, new_ratio) = NEW_FLOWS
        .iter()
        .map(|&p| (probes[p].label, ratio(p)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    println!(
        "target: {}-rule new-flow cost within {NEW_FLOW_TARGET}x of the {}-rule cost: \
         {new_ratio:.2}x at worst ({worst}), {}",
        RULE_COUNTS[last],
        RULE_COUNTS[0],
        verdict(new_ratio <= NEW_FLOW_TARGET)
    );
    println!("established flow: {:.2}x", ratio(ESTABLISHED));
    let established_above = (0..RULE_COUNTS.len())
        .map(|s| above(s, ESTABLISHED))
        .fold(f64::MIN, f64::max);
    println!(
        "target: established within {ESTABLISHED_ABOVE_FLOOR} ns of the floor: {established_above:.1} ns at worst, {}",
        verdict(established_above <= ESTABLISHED_ABOVE_FLOOR)
    );
    let (worst, new_above) = NEW_FLOWS
        .iter()
        .map(|&p| (probes[p].label, above(last, p)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    println!(
        "target: {}-rule new flow within {NEW_FLOW_ABOVE_FLOOR} ns of the floor: {new_above:.1} ns at worst ({worst}), {}",
        RULE_COUNTS[last],
        verdict(new_above <= NEW_FLOW_ABOVE_FLOOR)
    );

    let n = RULE_COUNTS[last];
    println!("\ncompile at {n} rules, both directions, ms (median of {COMPILE_RUNS} runs)");
    let [
        built,
        compiled_in,
        verified,
        fresh,
        replace,
        freed,
        total_fresh,
        total_replace,
    ] = timings.map(median);
    println!("  build_table                                   {built:8.2}");
    println!("  compile                                       {compiled_in:8.2}");
    println!("  verify against the reference                  {verified:8.2}");
    println!("  (sgd compiles and verifies the two directions on two threads)");
    println!("  install, first apply (map writes)             {fresh:8.2}");
    println!("  install, reload (writes, switch)              {replace:8.2}");
    println!("  freeing the old tables (1 s later, off path)  {freed:8.2}");
    for (what, total) in [("first apply", total_fresh), ("reload", total_replace)] {
        println!(
            "  sgd: compile + verify + install, {what:<11} {total:8.2}  target < {COMPILE_TARGET_MS} ms: {}",
            verdict(total < COMPILE_TARGET_MS)
        );
    }

    println!("\nmap memory of one interface at {n} rules (memlock growth in /proc/self/fdinfo)");
    let entries: BTreeMap<&str, usize> = compiled
        .entries()
        .into_iter()
        .chain([(sg_common::maps::INTERFACES, 1)])
        .collect();
    for (name, b, a) in &grown {
        let count = entries
            .get(name.as_str())
            .map_or(String::new(), |e| format!("{e:>6} entries"));
        println!(
            "  {name:<14} {b:>10} -> {a:>10} B  +{:>9} B  {count}",
            a - b
        );
    }
    println!(
        "  total: {memory} B = {:.2} MiB per interface  target < 2 MiB: {}",
        mib(memory),
        verdict(memory < MEMORY_TARGET)
    );
    // An LPM trie's memlock is its entries times the node size. Not
    // counted: the intermediate nodes it adds (fewer than its entries, each
    // as big) and the allocator's rounding of the node size up to its size
    // classes (bpf_mem_alloc: ..., 96, 128, 192, 256, 512, ...).
    let bound: u64 = grown
        .iter()
        .map(|(name, b, a)| match entries.get(name.as_str()) {
            Some(&n) if [sg_common::maps::ADDR, sg_common::maps::PORT].contains(&name.as_str()) => {
                let node = (a - b) / n as u64;
                let class = [16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096]
                    .into_iter()
                    .find(|&c| c >= node)
                    .unwrap_or(node);
                2 * n as u64 * class
            }
            _ => a - b,
        })
        .sum();
    println!(
        "  (tries with their intermediate nodes and size-class rounding: at most {:.2} MiB)",
        mib(bound)
    );
    let [built, compiled_in, verified] = referencing;
    println!(
        "\ncompile of {REFERENCING_RULES} rules referencing a {REFERENCED_MEMBERS}-member group, \
         both directions, ms (median of {COMPILE_RUNS} runs)"
    );
    println!("  build_table                                   {built:8.2}");
    println!("  compile                                       {compiled_in:8.2}");
    println!("  verify against the reference                  {verified:8.2}");
    let total = built + compiled_in + verified;
    println!(
        "  total                                         {total:8.2}  target < {GROUP_COMPILE_TARGET_MS} ms: {}",
        verdict(total < GROUP_COMPILE_TARGET_MS)
    );
    println!("\n(ran in {:.1} s)", started.elapsed().as_secs_f64());
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}
