//! The kernel side, seen from userspace: [`Dataplane`] loads the embedded
//! eBPF object, writes compiled tables into its maps, switches interfaces
//! to new tables atomically and attaches the classifier to TC hooks (TCX,
//! or classic TC on kernels before 6.6).
//!
//! This file holds the handle itself: loading the object (with or without
//! pins), the global settings and access to its maps. The rest is one
//! module per concept, each adding methods to [`Dataplane`]:
//!
//! - `pins`: the bpffs, where pins live ([`Pins`]), removing them;
//! - `tables`: table ids, writing tables, switching interfaces to new
//!   ones (double buffering; every interface of a change or none),
//!   freeing old tables a grace period after their last user left;
//! - `shared`: tables shared by content between interfaces, counted by
//!   their users; what a change needs written and which interfaces it
//!   switches (only those whose tables or flags differ);
//! - `antispoof`: the anti-spoofing addresses and MAC per interface;
//! - `attach`: the hooks ([`Hook`]), the attach mode, attaching and
//!   detaching in it;
//! - `tcx`: TCX links, pinned and replaced in place;
//! - `tc`: classic TC, a clsact qdisc and a direct-action filter, replaced
//!   in place, and removed without touching other tools' filters;
//! - `adopt`: taking over the tables a previous daemon left pinned;
//! - `readers`: what the kernel reports (counters, drop records, the
//!   kernel log);
//! - `counters`: the interfaces' counter slots and their counters;
//! - `sessions`: the session tables, listed, swept and flushed, their
//!   fill level and evictions. It is
//!   apart from the readers because sweeping and flushing write to it;
//! - `expedite`: expedited RCU grace periods while many interfaces are
//!   attached at once (each first TCX attach waits for one);
//! - `migrate`: moving the sessions of an earlier map layout's pinned
//!   tables into this one's (an upgrade that changes the layout).

mod adopt;
mod antispoof;
mod attach;
mod counters;
pub mod expedite;
mod migrate;
mod pins;
mod readers;
mod sessions;
mod shared;
mod tables;
mod tc;
mod tcx;

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, lpm_trie::Key},
    programs::{SchedClassifier, tc::SchedClassifierLinkId},
};
use sg_common::{
    AddrKey, GLOBAL_BLOCK_SMTP, GLOBAL_BUILTIN_DHCP_CLIENT, GLOBAL_BUILTIN_ND_REDIRECTS,
    GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY, GLOBAL_BUILTIN_NON_IP, GlobalConfig, MAX_TABLES, maps,
};

pub use attach::{HeldHooks, Hook};
pub use pins::{Pins, remove_pins};
pub use sessions::{TABLE_NAMES, TableUse, table_capacities};
pub use tc::{HANDLE as TC_HANDLE, PRIORITY as TC_PRIORITY};

use crate::model::{AttachMode, DaemonSettings};
use pins::ensure_bpffs;
use tables::TableKeys;
pub use tables::{GRACE, Switch};

/// The eBPF object built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sg"));

pub struct Dataplane {
    ebpf: Ebpf,
    /// `None`: nothing is pinned (tests); the program goes with the process.
    pins: Option<Pins>,
    free_tables: Vec<u32>,
    /// Tables in use by at least one interface, by id, with their users.
    live: HashMap<u32, shared::LiveTable>,
    /// Live tables by content fingerprint (see `shared`), to share them.
    by_content: HashMap<u64, Vec<u32>>,
    /// Per ifindex: the ids of its tables (by direction) and its flags.
    installed: HashMap<u32, shared::Installed>,
    /// (table, ifindex): interfaces that left a table others still use,
    /// whose counters are to be taken.
    left: Vec<(u32, u32)>,
    /// Tables switched away from, each with the time of its switch;
    /// freed a grace period later.
    retired: Vec<(std::time::Instant, TableKeys)>,
    /// The final rule counters of tables freed since the daemon last took
    /// them ([`Dataplane::take_freed_counts`]).
    freed_counts: Vec<(sg_common::RuleCounterKey, sg_common::Counter)>,
    /// How long retired tables stay ([`GRACE`]).
    grace: std::time::Duration,
    /// Attached interfaces, with the links this process holds for them
    /// (none for classic TC filters left to outlive it).
    links: HashMap<String, Vec<(Hook, SchedClassifierLinkId)>>,
    /// The attach mode in use: `[daemon] attach`, or what `auto` chose
    /// (`None` until it has tried a first interface).
    mode: Option<AttachMode>,
    /// Ruleset generation; sessions remember the one they were checked
    /// against.
    epoch: u32,
    /// Anti-spoofing entries written per hypervisor-mode ifindex.
    instance_addrs: HashMap<u32, Vec<Key<AddrKey>>>,
    /// Map directories of other layouts, whose sessions are moved into
    /// this one's and which are removed once every interface runs this
    /// program (see `migrate`).
    earlier_layouts: Vec<migrate::EarlierLayout>,
    /// The epoch migrated sessions get: before every ruleset this daemon
    /// installs, so that each is checked against its drop rules once.
    migration_epoch: u32,
    /// The MAC (or none) this dataplane last wrote per ifindex.
    instance_macs: HashMap<u32, Option<sg_common::InstanceMac>>,
    /// The `GLOBAL_*` flags last written.
    global_flags: Option<u32>,
    /// The global flags changed: the next install switches every
    /// interface it is given, so that their sessions are re-checked.
    recheck_all: bool,
    /// Per bound ifindex, its slot in `SG_IFACE_COUNTERS` (see `counters`).
    iface_slots: HashMap<u32, u32>,
    free_slots: Vec<u32>,
}

impl Dataplane {
    /// Loads the program into the kernel (not attached anywhere yet),
    /// with maps of its own that go with the process.
    pub fn load(settings: &DaemonSettings) -> anyhow::Result<Self> {
        Self::load_with(settings, None)
    }

    /// Loads the program with its maps pinned under `bpffs_dir` (mounting
    /// a bpffs there if none is), adopting the maps, tables and links an
    /// earlier daemon left: sessions and enforcement carry on. The
    /// sessions of an earlier map layout are copied in; call
    /// [`Dataplane::finish_migration`] once every interface is attached.
    pub fn open_pinned(settings: &DaemonSettings) -> anyhow::Result<Self> {
        ensure_bpffs(&settings.bpffs_dir)?;
        let pins = Pins::under(&settings.bpffs_dir);
        for dir in [&pins.maps, &pins.links] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut dp = Self::load_with(settings, Some(pins))?;
        dp.adopt()?;
        dp.find_earlier_layouts(&settings.session_timeouts());
        if let Some(mode) = dp.mode {
            tracing::info!("attaching with {mode} (attach = \"{mode}\")");
        }
        Ok(dp)
    }

    /// Kernel log records (aya-log, rare paths only) are compiled in but
    /// emitted only when debug logging is on.
    fn load_with(settings: &DaemonSettings, pins: Option<Pins>) -> anyhow::Result<Self> {
        let kernel_log_level = if tracing::enabled!(tracing::Level::DEBUG) {
            aya_log::Level::Debug
        } else {
            aya_log::Level::Info
        } as u8;
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &kernel_log_level, true);
        let sizes = sessions::table_capacities(settings.session_table_size);
        for (name, size) in maps::SESSION_TABLES.into_iter().zip(sizes) {
            loader.map_max_entries(name, size);
        }
        if let Some(pins) = &pins {
            for name in maps::PINNED {
                loader.map_pin_path(name, pins.maps.join(name));
            }
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the sg eBPF object")?;
        for hook in Hook::BOTH {
            load_program(&mut ebpf, hook.program())?;
        }
        let mut dp = Dataplane {
            ebpf,
            pins,
            // Popped from the end: low ids first.
            free_tables: (0..MAX_TABLES).rev().collect(),
            live: HashMap::new(),
            by_content: HashMap::new(),
            installed: HashMap::new(),
            left: Vec::new(),
            retired: Vec::new(),
            freed_counts: Vec::new(),
            grace: GRACE,
            links: HashMap::new(),
            mode: match settings.attach {
                AttachMode::Auto => None,
                mode => Some(mode),
            },
            epoch: 0,
            instance_addrs: HashMap::new(),
            earlier_layouts: Vec::new(),
            migration_epoch: 0,
            instance_macs: HashMap::new(),
            global_flags: None,
            recheck_all: false,
            iface_slots: HashMap::new(),
            free_slots: counters::all_slots(),
        };
        dp.set_global(settings)?;
        dp.check_session_table_size(settings.session_table_size);
        Ok(dp)
    }

    /// Pinned session tables keep the size they were created with: a
    /// different `session_table_size` applies only to new tables (after
    /// `sgd --detach` and a restart, which drops the sessions, or a new
    /// map layout). Says so when the sizes differ.
    fn check_session_table_size(&self, wanted: u32) {
        let Ok(tables) = self.session_tables() else {
            return;
        };
        let sizes = sessions::table_capacities(wanted);
        let differ = tables.iter().zip(sizes);
        for (t, _) in differ.filter(|(t, size)| t.capacity != u64::from(*size)) {
            tracing::warn!(
                table = t.table,
                capacity = t.capacity,
                session_table_size = wanted,
                "the pinned session table keeps its size; `sgd --detach` and a restart apply session_table_size (and drop the tracked sessions)"
            );
        }
    }

    pub fn set_global(&mut self, settings: &DaemonSettings) -> anyhow::Result<()> {
        let flags = [
            (settings.block_smtp_egress, GLOBAL_BLOCK_SMTP),
            (
                settings.builtin_neighbor_discovery,
                GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY,
            ),
            (settings.builtin_dhcp_client, GLOBAL_BUILTIN_DHCP_CLIENT),
            (settings.builtin_nd_redirects, GLOBAL_BUILTIN_ND_REDIRECTS),
            (settings.builtin_non_ip, GLOBAL_BUILTIN_NON_IP),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |flags, (_, bit)| flags | bit);
        let global = GlobalConfig {
            timeouts: settings.session_timeouts(),
            flags,
            _pad: 0,
        };
        // A switch such as the SMTP block may end sessions: every
        // interface's sessions are re-checked (a new epoch) at the next
        // install, whether its tables changed or not.
        if self.global_flags.is_some_and(|old| old != flags) {
            self.recheck_all = true;
        }
        self.global_flags = Some(flags);
        let mut map: Array<_, GlobalConfig> = Array::try_from(self.map(maps::GLOBAL)?)?;
        map.set(0, global, 0)?;
        Ok(())
    }

    fn map_ref(&self, name: &str) -> anyhow::Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }

    fn map(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
    }
}

/// Loads program `name` into the kernel (the verifier runs here), logging
/// how much of the verifier's 1M-instruction budget it took.
fn load_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("loading program {name} (verifier)"))?;
    if let Some(n) = prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count())
    {
        tracing::debug!(program = name, verified_instructions = n, "program loaded");
    }
    Ok(prog)
}
