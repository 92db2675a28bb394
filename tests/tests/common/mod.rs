//! The loaded classifier under `BPF_PROG_TEST_RUN`, shared by the kernel
//! tests: one copy of the program and its maps, a ruleset installed for
//! ifindex 1 (`lo`, which is what a test run's skb carries), as an Ethernet
//! or an L3 device, and each run's verdict with what decided, read back
//! from `skb->cb`; tables of cases (a frame, a hook, the reason that must
//! decide) run by [`Kernel::check`].

use std::{collections::HashMap, path::Path};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use sg_common::{CB_REASON, CB_RULE, CB_TABLE, IFACE_HYPERVISOR, IFACE_L3, NO_RULE, Reason};
use sg_daemon::{
    compile::{CompiledTable, Origin, Table, build_table, compile},
    config,
    dataplane::{Dataplane, Hook},
    model::{Addresses, BindingMode, Config, Direction},
};

/// `toml` as a checked config (panics naming the problem).
#[allow(dead_code)] // the differential test builds its configs itself
pub fn parse(toml: &str) -> Config {
    config::parse(Path::new("testrun.toml"), toml).unwrap_or_else(|e| panic!("{e}"))
}

pub const LOOPBACK_IFINDEX: u32 = 1;
pub const PASS: u32 = -1i32 as u32;
pub const DROP: u32 = 2;

/// Size of `struct __sk_buff` and the offsets of its `ifindex` and `cb`.
const SKB_SIZE: usize = 192;
const SKB_IFINDEX_OFFSET: usize = 40;
const SKB_CB_OFFSET: usize = 48;

/// The tables (inbound, outbound) of the first binding of `config`, as
/// built and as compiled (its addresses resolve to none but the listed
/// ones).
pub fn compile_first(config: &Config) -> ([Table; 2], [CompiledTable; 2]) {
    let binding = &config.interfaces[0];
    let addresses = Addresses::resolve(config, |_| Vec::new());
    let tables = Direction::BOTH.map(|dir| build_table(config, binding, &addresses, dir));
    let compiled = [&tables[0], &tables[1]].map(|t| compile(t).expect("compile"));
    (tables, compiled)
}

/// What the kernel decided for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: u32,
    pub reason: Reason,
    /// The deciding table entry, when a rule decided.
    pub origin: Option<Origin>,
}

pub struct Kernel {
    pub dataplane: Dataplane,
    /// Every table installed so far, by kernel table id, to name the rule
    /// indices the kernel reports (a fragment or a session may name a rule
    /// of an earlier ruleset).
    tables: HashMap<u32, Table>,
    hypervisor: bool,
    /// Installed as an L3 device (`IFACE_L3`): no link header.
    l3: bool,
}

impl Kernel {
    /// Loads the program and installs the first binding of `toml`.
    #[allow(dead_code)] // the differential test builds its configs itself
    pub fn new(toml: &str) -> Kernel {
        let config = parse(toml);
        let mut kernel = Kernel::load(&config);
        kernel.install(&config);
        kernel
    }

    /// Loads the program and installs the first binding of `toml` as an L3
    /// device: the classifier reads the IP header at offset 0. A test run
    /// still takes the protocol (`skb->protocol`) from bytes 12..14, where
    /// an Ethernet header has its ethertype.
    #[allow(dead_code)] // only the test-run tests have L3 cases
    pub fn new_l3(toml: &str) -> Kernel {
        let config =
            config::parse(Path::new("testrun.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
        let mut kernel = Kernel::load(&config);
        kernel.l3 = true;
        kernel.install(&config);
        kernel
    }

    /// Loads the program with `config`'s daemon settings, nothing installed.
    pub fn load(config: &Config) -> Kernel {
        let mut dataplane = Dataplane::load(&config.daemon).expect("load the eBPF program");
        // Test runs are synchronous: no packet still uses switched-out
        // tables once `install` returns.
        dataplane.set_grace(std::time::Duration::ZERO);
        Kernel {
            dataplane,
            tables: HashMap::new(),
            hypervisor: false,
            l3: false,
        }
    }

    /// Installs the first binding of `config` on lo (its addresses resolve
    /// to none but the listed ones).
    pub fn install(&mut self, config: &Config) {
        let binding = &config.interfaces[0];
        let addresses = Addresses::resolve(config, |_| Vec::new());
        let (tables, compiled) = compile_first(config);
        self.hypervisor = binding.mode == BindingMode::Hypervisor;
        let flags =
            if self.hypervisor { IFACE_HYPERVISOR } else { 0 } | if self.l3 { IFACE_L3 } else { 0 };
        self.dataplane.collect_garbage().unwrap();
        self.dataplane.set_global(&config.daemon).unwrap();
        self.dataplane
            .set_instance_addresses(
                LOOPBACK_IFINDEX,
                addresses.instance(&binding.name),
                binding.mac,
            )
            .unwrap();
        self.dataplane
            .install(LOOPBACK_IFINDEX, flags, [&compiled[0], &compiled[1]])
            .expect("install tables");
        let ids = self
            .dataplane
            .tables_of(LOOPBACK_IFINDEX)
            .expect("installed");
        for (id, table) in ids.into_iter().zip(tables) {
            self.tables.insert(id, table);
        }
    }

    /// The TC hook that sees traffic of `dir` on this interface.
    #[allow(dead_code)] // the differential test picks hooks by direction
    pub fn hook(&self, dir: Direction) -> Hook {
        match (dir, self.hypervisor) {
            (Direction::Ingress, false) | (Direction::Egress, true) => Hook::Ingress,
            _ => Hook::Egress,
        }
    }

    /// Runs one frame through a hook.
    pub fn run(&self, hook: Hook, frame: &[u8]) -> Verdict {
        let program = self.dataplane.program(hook).unwrap();
        let decision = run_frame(program, 0, frame);
        let origin = decision.rule.map(|rule| {
            let table = &self.tables[&decision.table];
            table.rules[rule as usize].origin.clone()
        });
        Verdict {
            code: decision.code,
            reason: decision.reason,
            origin,
        }
    }
}

/// What the kernel left for one frame: its TC return code and, from
/// `skb->cb`, the reason and the deciding rule of table `table`.
pub struct Decision {
    pub code: u32,
    pub reason: Reason,
    pub rule: Option<u32>,
    pub table: u32,
}

/// Runs `frame` through `program` with `BPF_PROG_TEST_RUN`, as if it came
/// on interface `ifindex` (0: the test run's default, `lo`).
pub fn run_frame(program: &SchedClassifier, ifindex: u32, frame: &[u8]) -> Decision {
    let mut ctx_in = [0u8; SKB_SIZE];
    ctx_in[SKB_IFINDEX_OFFSET..SKB_IFINDEX_OFFSET + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let mut ctx_out = [0u8; SKB_SIZE];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx_in),
            ctx_out: Some(&mut ctx_out),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    let cb = |i: usize| {
        let at = SKB_CB_OFFSET + 4 * i;
        u32::from_ne_bytes(ctx_out[at..at + 4].try_into().unwrap())
    };
    Decision {
        code: result.return_value,
        reason: Reason::from_u32(cb(CB_REASON)).expect("a known reason in cb"),
        rule: Some(cb(CB_RULE)).filter(|r| *r != NO_RULE),
        table: cb(CB_TABLE),
    }
}

/// One frame through one hook, and the reason that must decide it (which
/// also fixes the TC return code).
#[allow(dead_code)] // the differential test compares with the reference instead
pub struct Case {
    what: &'static str,
    hook: Hook,
    frame: Vec<u8>,
    reason: Reason,
}

/// A case: `what` is said when it fails.
#[allow(dead_code)] // the differential test compares with the reference instead
pub fn case(what: &'static str, hook: Hook, frame: Vec<u8>, reason: Reason) -> Case {
    Case {
        what,
        hook,
        frame,
        reason,
    }
}

impl Kernel {
    /// Runs every case in order, then panics naming each case that was
    /// decided otherwise, or with a return code that does not go with its
    /// reason.
    #[allow(dead_code)] // the differential test compares with the reference instead
    #[track_caller]
    pub fn check(&self, cases: &[Case]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|c| {
                let v = self.run(c.hook, &c.frame);
                let code = if c.reason.accepts() { PASS } else { DROP };
                (v.reason != c.reason || v.code != code).then(|| {
                    format!(
                        "  {:?} ({:?}): expected {:?} (TC code {}), got {:?} (TC code {})",
                        c.what, c.hook, c.reason, code as i32, v.reason, v.code as i32
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
