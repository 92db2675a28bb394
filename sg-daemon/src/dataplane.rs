//! The kernel side, seen from userspace: loads the embedded eBPF object,
//! writes compiled tables into its maps, switches interfaces to new tables
//! atomically and attaches the classifier to TC (TCX) hooks.
//!
//! Double buffering: a ruleset change writes complete new tables under
//! fresh table ids, then replaces the interface's `SG_INTERFACES` entry in
//! one map update. A packet reads that entry once, so it sees the old
//! tables or the new ones, never a mix. The old tables are freed later
//! ([`Dataplane::collect_garbage`]), once no packet can still be using them.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId},
    },
};
use sg_common::{
    ADDR_KEY_FIXED_BITS, AddrKey, Bitmap, Counter, CtKey, CtValue, DIM_LOCAL, FAMILY_V4, FragKey,
    FragValue, GLOBAL_BLOCK_SMTP, GLOBAL_BUILTIN_DHCP_CLIENT, GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY,
    GlobalConfig, IfaceCounterKey, InterfaceConfig, MAP_LAYOUT_VERSION, MAX_TABLES,
    PORT_KEY_FIXED_BITS, PortKey, ProtoKey, REASON_COUNT, Reason, RuleCounterKey, TableInfo, maps,
    programs,
};

use crate::{
    compile::{CompiledTable, addr_bytes},
    model::DaemonSettings,
};

/// The eBPF object built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sg"));

/// The two TC hooks, each with its own entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const BOTH: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    fn program(self) -> &'static str {
        match self {
            Hook::Ingress => programs::INGRESS,
            Hook::Egress => programs::EGRESS,
        }
    }

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }
}

fn same_key(a: &Key<AddrKey>, b: &Key<AddrKey>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}

/// The map keys one table occupies, so that it can be removed again.
#[derive(Default)]
struct TableKeys {
    id: u32,
    proto: Vec<ProtoKey>,
    addr: Vec<Key<AddrKey>>,
    port: Vec<Key<PortKey>>,
}

/// Where a daemon's pins live under its `bpffs_dir`: the maps (versioned
/// by layout) and one link per interface and hook. A pinned link keeps its
/// program attached, and pinned maps keep their state, after the daemon
/// exits; the next daemon adopts both.
#[derive(Debug, Clone)]
pub struct Pins {
    pub maps: PathBuf,
    pub links: PathBuf,
}

impl Pins {
    pub fn under(bpffs_dir: &Path) -> Pins {
        Pins {
            maps: bpffs_dir.join(format!("maps-v{MAP_LAYOUT_VERSION}")),
            links: bpffs_dir.join("links"),
        }
    }

    fn link(&self, ifindex: u32, ifname: &str, hook: Hook) -> PathBuf {
        self.links
            .join(format!("{ifindex}-{ifname}-{}", hook.program()))
    }

    /// Pinned links of an interface index, whatever its name was.
    fn links_of(&self, ifindex: u32) -> Vec<PathBuf> {
        let prefix = format!("{ifindex}-");
        std::fs::read_dir(&self.links)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }

    /// Every pinned link's interface index.
    fn linked_ifindexes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = std::fs::read_dir(&self.links)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .split('-')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

pub struct Dataplane {
    ebpf: Ebpf,
    /// `None`: nothing is pinned (tests); the program goes with the process.
    pins: Option<Pins>,
    free_tables: Vec<u32>,
    /// Tables in use, per ifindex, by direction.
    installed: HashMap<u32, [TableKeys; 2]>,
    /// Tables switched away from; cleared at the next change.
    retired: Vec<TableKeys>,
    links: HashMap<String, Vec<(Hook, SchedClassifierLinkId)>>,
    /// Ruleset generation; sessions remember the one they were checked
    /// against.
    epoch: u32,
    /// Anti-spoofing entries written per hypervisor-mode ifindex.
    instance_addrs: HashMap<u32, Vec<Key<AddrKey>>>,
}

impl Dataplane {
    /// Loads the program into the kernel (not attached anywhere yet),
    /// with maps of its own that go with the process.
    pub fn load(settings: &DaemonSettings) -> anyhow::Result<Self> {
        Self::load_with(settings, None)
    }

    /// Loads the program with its maps pinned under `bpffs_dir` (mounting
    /// a bpffs there if none is), adopting the maps, tables and links an
    /// earlier daemon left: sessions and enforcement carry on.
    pub fn open_pinned(settings: &DaemonSettings) -> anyhow::Result<Self> {
        ensure_bpffs(&settings.bpffs_dir)?;
        let pins = Pins::under(&settings.bpffs_dir);
        for dir in [&pins.maps, &pins.links] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut dp = Self::load_with(settings, Some(pins))?;
        dp.adopt()?;
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
        if let Some(pins) = &pins {
            for name in maps::PINNED {
                loader.map_pin_path(name, pins.maps.join(name));
            }
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the sg eBPF object")?;
        for hook in Hook::BOTH {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(hook.program())
                .ok_or_else(|| anyhow!("program {} missing from the object", hook.program()))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading program {} (verifier)", hook.program()))?;
        }
        let mut dp = Dataplane {
            ebpf,
            pins,
            // Popped from the end: low ids first.
            free_tables: (0..MAX_TABLES).rev().collect(),
            installed: HashMap::new(),
            retired: Vec::new(),
            links: HashMap::new(),
            epoch: 0,
            instance_addrs: HashMap::new(),
        };
        dp.set_global(settings)?;
        Ok(dp)
    }

    pub fn set_global(&mut self, settings: &DaemonSettings) -> anyhow::Result<()> {
        let mut flags = 0;
        if settings.block_smtp_egress {
            flags |= GLOBAL_BLOCK_SMTP;
        }
        if settings.builtin_neighbor_discovery {
            flags |= GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY;
        }
        if settings.builtin_dhcp_client {
            flags |= GLOBAL_BUILTIN_DHCP_CLIENT;
        }
        let global = GlobalConfig {
            session_timeout_ns: settings.session_timeout_secs.saturating_mul(1_000_000_000),
            flags,
            _pad: 0,
        };
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

    /// Switches `ifindex` to new tables (inbound, outbound) atomically. On
    /// error the interface keeps its previous tables.
    pub fn install(
        &mut self,
        ifindex: u32,
        flags: u32,
        tables: [&CompiledTable; 2],
    ) -> anyhow::Result<()> {
        self.epoch = self.epoch.wrapping_add(1);
        if self.free_tables.len() < 2 {
            // Out of table ids: reclaim the switched-out ones now.
            self.collect_garbage()?;
        }
        let mut written: Vec<TableKeys> = Vec::new();
        for table in tables {
            match self.write_table(table) {
                Ok(keys) => written.push(keys),
                Err(e) => {
                    // Never switched in: no packet has seen them.
                    self.remove_tables(written)?;
                    return Err(e);
                }
            }
        }
        let [inbound, outbound]: [TableKeys; 2] = written
            .try_into()
            .map_err(|_| anyhow!("two tables expected"))?;
        let config = InterfaceConfig {
            tables: [inbound.id, outbound.id],
            flags,
            epoch: self.epoch,
        };
        let mut ifaces: BpfHashMap<_, u32, InterfaceConfig> =
            BpfHashMap::try_from(self.map(maps::INTERFACES)?)?;
        if let Err(e) = ifaces.insert(ifindex, config, 0) {
            self.remove_tables(vec![inbound, outbound])?;
            return Err(e).context("switching the interface to its new tables");
        }
        if let Some(old) = self.installed.insert(ifindex, [inbound, outbound]) {
            self.retired.extend(old);
        }
        Ok(())
    }

    /// The table ids (inbound, outbound) `ifindex` uses now.
    pub fn tables_of(&self, ifindex: u32) -> Option<[u32; 2]> {
        self.installed.get(&ifindex).map(|[i, o]| [i.id, o.id])
    }

    /// Stops enforcing on `ifindex` (packets there pass as unbound).
    pub fn uninstall(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut ifaces: BpfHashMap<_, u32, InterfaceConfig> =
            BpfHashMap::try_from(self.map(maps::INTERFACES)?)?;
        let _ = ifaces.remove(&ifindex);
        if let Some(old) = self.installed.remove(&ifindex) {
            self.retired.extend(old);
        }
        self.set_instance_addresses(ifindex, &[])
    }

    fn write_table(&mut self, table: &CompiledTable) -> anyhow::Result<TableKeys> {
        let id = self
            .free_tables
            .pop()
            .ok_or_else(|| anyhow!("all {MAX_TABLES} kernel tables are in use"))?;
        let mut keys = TableKeys {
            id,
            ..Default::default()
        };
        match self.fill_table(table, &mut keys) {
            Ok(()) => Ok(keys),
            Err(e) => {
                self.remove_tables(vec![keys])?;
                Err(e)
            }
        }
    }

    fn fill_table(&mut self, table: &CompiledTable, keys: &mut TableKeys) -> anyhow::Result<()> {
        let id = keys.id;
        let mut proto: BpfHashMap<_, ProtoKey, Bitmap> =
            BpfHashMap::try_from(self.map(maps::PROTO)?)?;
        for (p, bits) in &table.proto {
            let key = ProtoKey {
                table: id,
                proto: *p,
            };
            proto.insert(key, bits, 0).context("writing SG_PROTO")?;
            keys.proto.push(key);
        }
        let mut addr: LpmTrie<_, AddrKey, Bitmap> = LpmTrie::try_from(self.map(maps::ADDR)?)?;
        for e in &table.addr {
            let key = Key::new(
                ADDR_KEY_FIXED_BITS + e.prefix_len as u32,
                AddrKey {
                    table: id.to_be_bytes(),
                    dim: e.dim,
                    family: e.family,
                    addr: e.addr,
                    _pad: [0; 2],
                },
            );
            addr.insert(&key, e.bits, 0).context("writing SG_ADDR")?;
            keys.addr.push(key);
        }
        let mut port: LpmTrie<_, PortKey, Bitmap> = LpmTrie::try_from(self.map(maps::PORT)?)?;
        for e in &table.port {
            let key = Key::new(
                PORT_KEY_FIXED_BITS + e.prefix_len as u32,
                PortKey {
                    table: id.to_be_bytes(),
                    dim: e.dim,
                    port: e.port.to_be_bytes(),
                },
            );
            port.insert(&key, e.bits, 0).context("writing SG_PORT")?;
            keys.port.push(key);
        }
        let info = TableInfo {
            accept: table.accept,
            default_accept: table.default_accept as u32,
            rule_count: table.rule_count as u32,
            flags: table.flags,
            _pad: 0,
        };
        let mut tables: Array<_, TableInfo> = Array::try_from(self.map(maps::TABLES)?)?;
        tables.set(id, info, 0).context("writing SG_TABLES")?;
        Ok(())
    }

    /// Sets the addresses a hypervisor-mode instance may send from; an
    /// empty list removes them (instance mode).
    pub fn set_instance_addresses(&mut self, ifindex: u32, addrs: &[IpAddr]) -> anyhow::Result<()> {
        let keys: Vec<Key<AddrKey>> = addrs
            .iter()
            .map(|a| {
                let (family, addr) = addr_bytes(&IpNet::from(*a));
                let len = if family == FAMILY_V4 { 32 } else { 128 };
                Key::new(
                    ADDR_KEY_FIXED_BITS + len,
                    AddrKey {
                        table: ifindex.to_be_bytes(),
                        dim: DIM_LOCAL,
                        family,
                        addr,
                        _pad: [0; 2],
                    },
                )
            })
            .collect();
        let old = self
            .instance_addrs
            .insert(ifindex, keys.clone())
            .unwrap_or_default();
        let mut trie: LpmTrie<_, AddrKey, u8> = LpmTrie::try_from(self.map(maps::INSTANCE_ADDRS)?)?;
        for k in &keys {
            trie.insert(k, 1, 0).context("writing SG_INSTANCE_ADDRS")?;
        }
        for k in old.iter().filter(|k| !keys.iter().any(|n| same_key(n, k))) {
            let _ = trie.remove(k);
        }
        Ok(())
    }

    /// Frees the tables that interfaces were switched away from. Call it
    /// once no packet can still be using them: a packet reads its tables'
    /// ids once, at its start, and takes microseconds; `sgd` waits a
    /// second after a change.
    pub fn collect_garbage(&mut self) -> anyhow::Result<()> {
        let retired = std::mem::take(&mut self.retired);
        self.remove_tables(retired)
    }

    /// Whether switched-out tables wait for [`Dataplane::collect_garbage`].
    pub fn has_garbage(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Removes the entries of tables no interface points at.
    fn remove_tables(&mut self, tables: Vec<TableKeys>) -> anyhow::Result<()> {
        for keys in tables {
            let mut proto: BpfHashMap<_, ProtoKey, Bitmap> =
                BpfHashMap::try_from(self.map(maps::PROTO)?)?;
            for k in &keys.proto {
                let _ = proto.remove(k);
            }
            let mut addr: LpmTrie<_, AddrKey, Bitmap> = LpmTrie::try_from(self.map(maps::ADDR)?)?;
            for k in &keys.addr {
                let _ = addr.remove(k);
            }
            let mut port: LpmTrie<_, PortKey, Bitmap> = LpmTrie::try_from(self.map(maps::PORT)?)?;
            for k in &keys.port {
                let _ = port.remove(k);
            }
            self.free_tables.push(keys.id);
        }
        Ok(())
    }

    /// Attaches both hooks of `ifname` (TCX on kernels >= 6.6). Call after
    /// `install`, so the first packet already finds its tables.
    ///
    /// With pins, a link an earlier daemon pinned for this interface is
    /// taken over in place (`bpf_link_update`): the hook never runs without
    /// a program. A new link is pinned, so it outlives this process.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        if self.links.contains_key(ifname) {
            return Ok(());
        }
        let mut links = Vec::new();
        for hook in Hook::BOTH {
            match self.attach_hook(ifname, ifindex, hook) {
                Ok(link) => links.push((hook, link)),
                Err(e) => {
                    for (hook, link) in links {
                        let _ = self.program_mut(hook)?.detach(link);
                    }
                    return Err(e).with_context(|| format!("attaching to {ifname} {hook:?}"));
                }
            }
        }
        self.links.insert(ifname.to_owned(), links);
        Ok(())
    }

    fn attach_hook(
        &mut self,
        ifname: &str,
        ifindex: u32,
        hook: Hook,
    ) -> anyhow::Result<SchedClassifierLinkId> {
        let pin = self.pins.as_ref().map(|p| p.link(ifindex, ifname, hook));
        if let Some(pin) = &pin
            && pin.exists()
        {
            let pinned = PinnedLink::from_pin(pin)?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
            return Ok(self.program_mut(hook)?.attach_to_link(link)?);
        }
        let prog = self.program_mut(hook)?;
        let id = prog.attach(ifname, hook.attach_type())?;
        if let Some(pin) = pin {
            // The program keeps a handle; the pin keeps the link alive.
            let link: FdLink = prog.take_link(id)?.try_into()?;
            let pinned = link
                .pin(&pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
            return Ok(self.program_mut(hook)?.attach_to_link(link)?);
        }
        Ok(id)
    }

    /// Takes the programs off `ifname` for good: its pinned links are
    /// removed too.
    pub fn detach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        for (hook, link) in self.links.remove(ifname).unwrap_or_default() {
            let _ = self.program_mut(hook)?.detach(link);
        }
        self.unpin_links(ifindex);
        Ok(())
    }

    /// Removes the pinned links of an interface index (the kernel detaches
    /// a link once no pin or handle holds it).
    pub fn unpin_links(&self, ifindex: u32) {
        if let Some(pins) = &self.pins {
            for path in pins.links_of(ifindex) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Interface indexes that have tables or pinned links, from this or an
    /// earlier daemon.
    pub fn known_ifindexes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.installed.keys().copied().collect();
        if let Some(pins) = &self.pins {
            out.extend(pins.linked_ifindexes());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Removes everything this dataplane pinned (links, then maps), so
    /// that the programs leave every interface when the process exits.
    pub fn unpin_all(&mut self) -> anyhow::Result<()> {
        let Some(pins) = self.pins.clone() else {
            return Ok(());
        };
        for dir in [&pins.links, &pins.maps] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// Takes over what an earlier daemon left in the pinned maps: which
    /// tables each interface uses (kept until replaced), which are garbage,
    /// the ruleset epoch, and the anti-spoofing entries.
    fn adopt(&mut self) -> anyhow::Result<()> {
        let ifaces: Vec<(u32, InterfaceConfig)> =
            BpfHashMap::<_, u32, InterfaceConfig>::try_from(self.map_ref(maps::INTERFACES)?)?
                .iter()
                .filter_map(Result::ok)
                .collect();
        let proto: Vec<ProtoKey> =
            BpfHashMap::<_, ProtoKey, Bitmap>::try_from(self.map_ref(maps::PROTO)?)?
                .keys()
                .filter_map(Result::ok)
                .collect();
        let addr: Vec<Key<AddrKey>> =
            LpmTrie::<_, AddrKey, Bitmap>::try_from(self.map_ref(maps::ADDR)?)?
                .keys()
                .filter_map(Result::ok)
                .collect();
        let port: Vec<Key<PortKey>> =
            LpmTrie::<_, PortKey, Bitmap>::try_from(self.map_ref(maps::PORT)?)?
                .keys()
                .filter_map(Result::ok)
                .collect();
        let instance: Vec<Key<AddrKey>> =
            LpmTrie::<_, AddrKey, u8>::try_from(self.map_ref(maps::INSTANCE_ADDRS)?)?
                .keys()
                .filter_map(Result::ok)
                .collect();

        let mut by_table: HashMap<u32, TableKeys> = HashMap::new();
        fn table(by: &mut HashMap<u32, TableKeys>, id: u32) -> &mut TableKeys {
            by.entry(id).or_insert_with(|| TableKeys {
                id,
                ..Default::default()
            })
        }
        for k in proto {
            table(&mut by_table, k.table).proto.push(k);
        }
        for k in addr {
            table(&mut by_table, u32::from_be_bytes(k.data().table))
                .addr
                .push(k);
        }
        for k in port {
            table(&mut by_table, u32::from_be_bytes(k.data().table))
                .port
                .push(k);
        }
        for k in instance {
            let ifindex = u32::from_be_bytes(k.data().table);
            self.instance_addrs.entry(ifindex).or_default().push(k);
        }
        let mut used = Vec::new();
        for (ifindex, config) in &ifaces {
            let tables = config.tables.map(|id| {
                used.push(id);
                by_table.remove(&id).unwrap_or(TableKeys {
                    id,
                    ..Default::default()
                })
            });
            self.installed.insert(*ifindex, tables);
            self.epoch = self.epoch.max(config.epoch);
        }
        used.extend(by_table.keys());
        self.retired.extend(by_table.into_values());
        self.free_tables.retain(|id| !used.contains(id));
        Ok(())
    }

    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    fn program_mut(&mut self, hook: Hook) -> anyhow::Result<&mut SchedClassifier> {
        Ok(self
            .ebpf
            .program_mut(hook.program())
            .ok_or_else(|| anyhow!("program {} missing", hook.program()))?
            .try_into()?)
    }

    /// The loaded program of a hook, for `BPF_PROG_TEST_RUN`.
    pub fn program(&self, hook: Hook) -> anyhow::Result<&SchedClassifier> {
        Ok(self
            .ebpf
            .program(hook.program())
            .ok_or_else(|| anyhow!("program {} missing", hook.program()))?
            .try_into()?)
    }

    /// The reader of the kernel's log records; flush it when readable.
    pub fn kernel_logger(&mut self) -> anyhow::Result<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).context("reading the kernel log ring")
    }

    /// Packets decided so far, per reason, summed over CPUs.
    pub fn stats(&self) -> anyhow::Result<Vec<(Reason, u64)>> {
        let map = self
            .ebpf
            .map(maps::STATS)
            .ok_or_else(|| anyhow!("map {} missing", maps::STATS))?;
        let stats: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut out = Vec::with_capacity(REASON_COUNT as usize);
        for reason in Reason::ALL {
            let per_cpu = stats.get(&(reason as u32), 0)?;
            out.push((reason, per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// Packets and bytes per (table, rule), summed over CPUs.
    pub fn rule_counters(&self) -> anyhow::Result<Vec<(RuleCounterKey, Counter)>> {
        self.per_cpu_counters(maps::RULE_COUNTERS)
    }

    /// Packets and bytes per (interface, direction, verdict), summed over
    /// CPUs.
    pub fn interface_counters(&self) -> anyhow::Result<Vec<(IfaceCounterKey, Counter)>> {
        self.per_cpu_counters(maps::IFACE_COUNTERS)
    }

    fn per_cpu_counters<K: aya::Pod>(&self, name: &str) -> anyhow::Result<Vec<(K, Counter)>> {
        let map: PerCpuHashMap<&MapData, K, Counter> =
            PerCpuHashMap::try_from(self.map_ref(name)?)?;
        let mut out = Vec::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            let total = per_cpu.iter().fold(Counter::default(), |a, c| Counter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            });
            out.push((key, total));
        }
        Ok(out)
    }

    /// The kernel's ring of drop records (taken: call once).
    pub fn take_drop_ring(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(maps::DROPS)
            .ok_or_else(|| anyhow!("map {} missing or already taken", maps::DROPS))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Frees the memory of sessions idle for longer than `timeout_ns`. The
    /// kernel already treats them as absent; this only makes room. An entry
    /// is re-read just before it is deleted and kept if a packet touched it
    /// since it was found idle. Returns how many were freed.
    pub fn sweep_sessions(&mut self, timeout_ns: u64) -> anyhow::Result<usize> {
        let now = boot_time_ns()?;
        let mut ct: BpfHashMap<_, CtKey, CtValue> =
            BpfHashMap::try_from(self.map(maps::CONNTRACK)?)?;
        let idle: Vec<(CtKey, u64)> = ct
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.last_seen_ns) > timeout_ns)
            .map(|(k, v)| (k, v.last_seen_ns))
            .collect();
        let mut freed = 0;
        for (key, seen) in idle {
            // Touched (or gone) since it was found idle: keep it.
            let untouched = ct.get(&key, 0).is_ok_and(|v| v.last_seen_ns == seen);
            if untouched && ct.remove(&key).is_ok() {
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// Forgets every tracked session and remembered first fragment.
    pub fn flush_sessions(&mut self) -> anyhow::Result<()> {
        let mut ct: BpfHashMap<_, CtKey, CtValue> =
            BpfHashMap::try_from(self.map(maps::CONNTRACK)?)?;
        let keys: Vec<CtKey> = ct.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = ct.remove(k);
        }
        let mut frags: BpfHashMap<_, FragKey, FragValue> =
            BpfHashMap::try_from(self.map(maps::FRAGMENTS)?)?;
        let keys: Vec<FragKey> = frags.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = frags.remove(k);
        }
        Ok(())
    }

    /// Tracked sessions (live or expired but not yet evicted).
    pub fn sessions(&self) -> anyhow::Result<Vec<(CtKey, CtValue)>> {
        let map = self
            .ebpf
            .map(maps::CONNTRACK)
            .ok_or_else(|| anyhow!("map {} missing", maps::CONNTRACK))?;
        let ct: BpfHashMap<&MapData, CtKey, CtValue> = BpfHashMap::try_from(map)?;
        Ok(ct.iter().filter_map(Result::ok).collect())
    }
}

/// Removes sg's pins under `bpffs_dir` (links and maps of every layout
/// version): once no daemon holds them, the programs leave every interface.
pub fn remove_pins(bpffs_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(bpffs_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "links" || name.starts_with("maps-v") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Makes sure `dir` is on a bpffs, mounting one there if it is not (e.g.
/// `/sys/fs/bpf` not mounted, or a private `/sys`).
fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let on_bpffs = nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if !on_bpffs {
        nix::mount::mount(
            Some("bpf"),
            dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting a bpffs on {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "mounted a bpffs for sg's pins");
    }
    Ok(())
}

/// Now on the kernel's `bpf_ktime_get_boot_ns` clock.
fn boot_time_ns() -> anyhow::Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}
