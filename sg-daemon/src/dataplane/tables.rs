//! Compiled tables in the kernel's maps: the table-id allocator, writing a
//! table under a free id, switching interfaces to new tables
//! ([`Dataplane::install_all`]) and freeing the tables they were switched
//! away from.
//!
//! Sharing: interfaces whose tables are equal use one copy of each (see
//! `shared`). A change writes only the contents no live table holds, and
//! switches only the interfaces whose tables or flags differ; the others
//! keep their entry, epoch included, so their sessions are not re-checked.
//!
//! Double buffering: a ruleset change writes complete new tables under
//! fresh table ids, then replaces each switching interface's
//! `SG_INTERFACES` entry in one map update. A packet reads that entry
//! once, so it sees the old tables or the new ones, never a mix. A table
//! whose last interface left it is retired, with the time, and freed a
//! grace period later ([`GRACE`], [`Dataplane::collect_garbage`]), once no
//! packet can still be using it; its id is not reused before, and its
//! rule counters go with it (handed to the daemon, which adds them to the
//! rules it held). A change that the maps cannot hold whole is refused
//! before anything is written.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Pod,
    maps::{
        Array, HashMap as BpfHashMap,
        lpm_trie::{Key, LpmTrie},
    },
};
use sg_common::{
    ADDR_TRIE_ENTRIES, AddrKey, Bitmap, InterfaceConfig, MAX_INTERFACES, MAX_TABLES,
    PORT_TRIE_ENTRIES, PROTO_ENTRIES, PortKey, ProtoKey, TableInfo, maps,
};

use super::{
    Dataplane,
    shared::{Installed, Plan, Source},
};
use crate::compile::CompiledTable;

/// How long a table an interface was switched away from stays, from its
/// switch, before it is freed and its id reused: packets that read the
/// interface's entry before the switch may still be reading it.
pub const GRACE: Duration = Duration::from_secs(1);

/// The map keys one table occupies, so that it can be removed again.
#[derive(Default)]
pub(super) struct TableKeys {
    pub(super) id: u32,
    pub(super) proto: Vec<ProtoKey>,
    pub(super) addr: Vec<Key<AddrKey>>,
    pub(super) port: Vec<Key<PortKey>>,
}

impl TableKeys {
    /// A table with no entries (yet) under `id`.
    pub(super) fn empty(id: u32) -> TableKeys {
        TableKeys {
            id,
            ..Default::default()
        }
    }
}

/// One interface's switch to new tables, for [`Dataplane::install_all`]:
/// its ifindex, its flags and its (inbound, outbound) tables. Pass the
/// same reference for interfaces with equal tables: each distinct one is
/// fingerprinted once.
pub type Switch<'a> = (u32, u32, [&'a CompiledTable; 2]);

impl Dataplane {
    /// Switches `ifindex` to new tables (inbound, outbound) atomically. On
    /// error the interface keeps its previous tables.
    pub fn install(
        &mut self,
        ifindex: u32,
        flags: u32,
        tables: [&CompiledTable; 2],
    ) -> anyhow::Result<()> {
        self.install_all(&[(ifindex, flags, tables)])
    }

    /// Switches every interface of `switches` to its new tables, or none:
    /// the capacity (table ids, map entries) is checked before anything
    /// is written, all new tables are written before any interface is
    /// switched, and a failure half-way removes what was written and puts
    /// back the interfaces already switched. Tables equal to a live one
    /// are not written (the live one is shared), and an interface whose
    /// tables and flags stay is not switched. Each interface switches
    /// atomically; a table left without users is retired, freed by
    /// [`Dataplane::collect_garbage`] once its grace period is over (see
    /// [`Dataplane::make_room`] to wait for them when they are in the
    /// way).
    pub fn install_all(&mut self, switches: &[Switch]) -> anyhow::Result<()> {
        let plan = self.plan(switches);
        self.check_capacity(&plan, true)?;
        let mut written = Vec::new();
        for new in &plan.new {
            match self.write_table(new.table) {
                Ok(keys) => written.push(keys),
                Err(e) => {
                    // Never switched in: no packet has seen them.
                    self.remove_tables(written);
                    return Err(e);
                }
            }
        }
        if plan.switches.is_empty() {
            // Nothing switches, so nothing new was needed either.
            self.remove_tables(written);
            return Ok(());
        }
        let ids = |sources: [Source; 2]| {
            sources.map(|source| match source {
                Source::Live(id) => id,
                Source::New(at) => written[at].id,
            })
        };
        // Each switching interface's counter slot (new ones get one).
        let mut slots = Vec::with_capacity(plan.switches.len());
        for (ifindex, _, _) in &plan.switches {
            match self.iface_slot(*ifindex) {
                Ok(slot) => slots.push(slot),
                Err(e) => {
                    self.remove_tables(written);
                    return Err(e);
                }
            }
        }
        self.epoch = self.epoch.wrapping_add(1);
        let epoch = self.epoch;
        let mut ifaces: BpfHashMap<_, u32, InterfaceConfig> =
            BpfHashMap::try_from(self.map(maps::INTERFACES)?)?;
        // Each switched interface with the entry it had, to put back.
        let mut switched: Vec<(u32, Option<InterfaceConfig>)> = Vec::new();
        let mut failure = None;
        for ((ifindex, flags, sources), slot) in plan.switches.iter().zip(slots) {
            let before = ifaces.get(ifindex, 0).ok();
            let config = InterfaceConfig {
                tables: ids(*sources),
                flags: *flags,
                epoch,
                slot,
                _pad: 0,
            };
            if let Err(e) = ifaces.insert(*ifindex, config, 0) {
                failure = Some(e);
                break;
            }
            switched.push((*ifindex, before));
        }
        if let Some(e) = failure {
            for (ifindex, before) in &switched {
                let _ = match before {
                    Some(old) => ifaces.insert(*ifindex, old, 0),
                    None => ifaces.remove(ifindex),
                };
            }
            // Packets may have seen the new tables of the interfaces
            // switched and put back: those wait out their grace period.
            let seen: HashSet<usize> = plan.switches[..switched.len()]
                .iter()
                .flat_map(|(_, _, sources)| sources)
                .filter_map(|source| match source {
                    Source::New(at) => Some(*at),
                    Source::Live(_) => None,
                })
                .collect();
            let (seen, unseen) = written
                .into_iter()
                .enumerate()
                .partition::<Vec<_>, _>(|(at, _)| seen.contains(at));
            self.retire(seen.into_iter().map(|(_, t)| t).collect());
            self.remove_tables(unseen.into_iter().map(|(_, t)| t).collect());
            return Err(e).context("switching the interfaces to their new tables");
        }
        self.record_switches(&plan, written);
        Ok(())
    }

    /// After a successful switch: the new tables join the live ones, each
    /// interface takes its tables and leaves its old ones (all taken
    /// before any is left, so that a table one interface leaves and
    /// another joins is not retired).
    fn record_switches(&mut self, plan: &Plan, written: Vec<super::TableKeys>) {
        let new_ids: Vec<u32> = written.iter().map(|k| k.id).collect();
        for (keys, new) in written.into_iter().zip(&plan.new) {
            self.add_live(keys, new);
        }
        let mut left = Vec::new();
        for (ifindex, flags, sources) in &plan.switches {
            let ids = sources.map(|source| match source {
                Source::Live(id) => id,
                Source::New(at) => new_ids[at],
            });
            for id in ids {
                self.take_table(id);
            }
            let now = Installed { ids, flags: *flags };
            if let Some(old) = self.installed.insert(*ifindex, now) {
                left.extend(old.ids.map(|id| (id, *ifindex)));
            }
        }
        for (id, ifindex) in left {
            self.leave_table(id, ifindex);
        }
        self.take_left_counters();
        self.recheck_all = false;
    }

    /// Makes room for `switches` if they do not fit now but will once
    /// tables retired earlier are freed: waits until enough of those
    /// tables' grace periods are over (one grace period at most) and
    /// frees them. Refuses at once, changing nothing, what would not fit
    /// even then.
    pub fn make_room(&mut self, switches: &[Switch]) -> anyhow::Result<()> {
        let plan = self.plan(switches);
        self.check_capacity(&plan, false)?;
        while let Err(e) = self.check_capacity(&plan, true) {
            let Some(at) = self.next_collection() else {
                return Err(e);
            };
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            self.collect_garbage()?;
        }
        Ok(())
    }

    /// Refuses a plan whose new tables the table ids or the maps cannot
    /// hold beside those in use and, if `retired`, those retired (which
    /// stay until their grace period is over). Tables shared with live
    /// ones need nothing.
    fn check_capacity(&self, plan: &Plan, retired: bool) -> anyhow::Result<()> {
        let waiting = if retired { &self.retired[..] } else { &[] };
        let live = || {
            let retired = waiting.iter().map(|(_, t)| t);
            self.live.values().map(|t| &t.keys).chain(retired)
        };
        let free_ids = MAX_TABLES as usize - live().count();
        if plan.new.len() > free_ids {
            return Err(anyhow!(
                "{} kernel tables needed, {free_ids} of {MAX_TABLES} free",
                plan.new.len(),
            ));
        }
        let new_ifaces = plan
            .switches
            .iter()
            .filter(|(ifindex, _, _)| !self.installed.contains_key(ifindex))
            .count();
        if self.installed.len() + new_ifaces > MAX_INTERFACES as usize {
            return Err(anyhow!(
                "{new_ifaces} more interfaces than the {MAX_INTERFACES} sg can enforce"
            ));
        }
        type Count = fn(&TableKeys) -> usize;
        type Need = fn(&CompiledTable) -> usize;
        let maps: [(&str, u32, Count, Need); 3] = [
            (
                maps::PROTO,
                PROTO_ENTRIES,
                |k| k.proto.len(),
                |t| t.proto.len(),
            ),
            (
                maps::ADDR,
                ADDR_TRIE_ENTRIES,
                |k| k.addr.len(),
                |t| t.addr.len(),
            ),
            (
                maps::PORT,
                PORT_TRIE_ENTRIES,
                |k| k.port.len(),
                |t| t.port.len(),
            ),
        ];
        for (name, capacity, count, need) in maps {
            let free = (capacity as usize).saturating_sub(live().map(count).sum());
            let needed: usize = plan.new.iter().map(|t| need(t.table)).sum();
            if needed > free {
                return Err(anyhow!(
                    "{name} cannot hold the new tables: {needed} entries needed, {free} of {capacity} free"
                ));
            }
        }
        Ok(())
    }

    /// Refuses a ruleset whose distinct tables (`tables`, each once) take
    /// more than half of the table ids or of any table map: a restarted
    /// daemon writes every table afresh beside the ones it takes over
    /// (their contents are not known), so a host enforcing more could not
    /// restart or upgrade.
    pub fn check_restartable<'a>(
        tables: impl IntoIterator<Item = &'a CompiledTable>,
    ) -> anyhow::Result<()> {
        let tables: Vec<&CompiledTable> = tables.into_iter().collect();
        let limits = [
            ("kernel tables", MAX_TABLES, tables.len()),
            (
                maps::PROTO,
                PROTO_ENTRIES,
                tables.iter().map(|t| t.proto.len()).sum(),
            ),
            (
                maps::ADDR,
                ADDR_TRIE_ENTRIES,
                tables.iter().map(|t| t.addr.len()).sum(),
            ),
            (
                maps::PORT,
                PORT_TRIE_ENTRIES,
                tables.iter().map(|t| t.port.len()).sum(),
            ),
        ];
        for (what, capacity, needed) in limits {
            let half = capacity as usize / 2;
            if needed > half {
                return Err(anyhow!(
                    "the bound interfaces need {needed} {what} entries, over half of the \
                     {capacity} sg has ({half}): sgd could not restart or upgrade beside them \
                     (a restart writes every table afresh before the old ones go); bind fewer \
                     distinct lists of groups, or put interfaces on the same groups (equal \
                     tables are shared)"
                ));
            }
        }
        Ok(())
    }

    /// Tables no packet will newly read from: freed once their grace
    /// period from now is over.
    pub(super) fn retire(&mut self, tables: Vec<TableKeys>) {
        let now = Instant::now();
        self.retired.extend(tables.into_iter().map(|t| (now, t)));
    }

    /// The table ids (inbound, outbound) `ifindex` uses now.
    pub fn tables_of(&self, ifindex: u32) -> Option<[u32; 2]> {
        self.installed.get(&ifindex).map(|i| i.ids)
    }

    /// Stops enforcing on `ifindex` (packets there pass as unbound).
    pub fn uninstall(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut ifaces: BpfHashMap<_, u32, InterfaceConfig> =
            BpfHashMap::try_from(self.map(maps::INTERFACES)?)?;
        let _ = ifaces.remove(&ifindex);
        self.free_iface_slot(ifindex);
        if let Some(old) = self.installed.remove(&ifindex) {
            for id in old.ids {
                self.leave_table(id, ifindex);
            }
            self.take_left_counters();
        }
        self.set_instance_addresses(ifindex, &[], None)
    }

    fn write_table(&mut self, table: &CompiledTable) -> anyhow::Result<TableKeys> {
        let id = self
            .free_tables
            .pop()
            .ok_or_else(|| anyhow!("all {MAX_TABLES} kernel tables are in use"))?;
        let mut keys = TableKeys::empty(id);
        match self.fill_table(table, &mut keys) {
            Ok(()) => Ok(keys),
            Err(e) => {
                self.remove_tables(vec![keys]);
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
        let addr_entries = table.addr.iter().map(|e| {
            let key = AddrKey::new(id, e.dim, e.family, e.addr);
            (AddrKey::prefix_bits(e.prefix_len.into()), key, e.bits)
        });
        self.write_trie(maps::ADDR, addr_entries, &mut keys.addr)?;
        let port_entries = table.port.iter().map(|e| {
            let key = PortKey::new(id, e.dim, e.port);
            (PortKey::prefix_bits(e.prefix_len.into()), key, e.bits)
        });
        self.write_trie(maps::PORT, port_entries, &mut keys.port)?;
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

    /// Writes `(prefix length, key, bitmap)` entries into the LPM trie map
    /// `name`, recording each key in `written` (so that a failed table can
    /// still be removed).
    fn write_trie<K: Pod>(
        &mut self,
        name: &str,
        entries: impl Iterator<Item = (u32, K, Bitmap)>,
        written: &mut Vec<Key<K>>,
    ) -> anyhow::Result<()> {
        let mut trie: LpmTrie<_, K, Bitmap> = LpmTrie::try_from(self.map(name)?)?;
        for (prefix_len, data, bits) in entries {
            let key = Key::new(prefix_len, data);
            trie.insert(&key, bits, 0)
                .with_context(|| format!("writing {name}"))?;
            written.push(key);
        }
        Ok(())
    }

    /// Frees the tables that interfaces were switched away from at least
    /// the grace period ago ([`GRACE`]): a packet reads its tables' ids
    /// once, at its start, and takes microseconds. Their ids are free
    /// again from then on, not before. `sgd` calls it at
    /// [`Dataplane::next_collection`].
    pub fn collect_garbage(&mut self) -> anyhow::Result<()> {
        let Some(cutoff) = Instant::now().checked_sub(self.grace) else {
            return Ok(());
        };
        let (due, waiting) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(at, _)| *at <= cutoff);
        self.retired = waiting;
        self.remove_tables(due.into_iter().map(|(_, t)| t).collect());
        Ok(())
    }

    /// When the oldest switched-out table's grace period is over, if any
    /// waits.
    pub fn next_collection(&self) -> Option<Instant> {
        let oldest = self.retired.iter().map(|(at, _)| *at).min()?;
        Some(oldest + self.grace)
    }

    /// Sets how long switched-out tables stay after their switch ([`GRACE`]
    /// unless set). Zero suits callers whose packets run synchronously,
    /// between changes (`BPF_PROG_TEST_RUN`), and no one else.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// The ids of the tables installed or retired (not yet freed): those
    /// a packet, a counter or a drop record may still name.
    pub fn tables_in_use(&self) -> Vec<u32> {
        let retired = self.retired.iter().map(|(_, t)| t.id);
        self.live.keys().copied().chain(retired).collect()
    }

    /// The entries the kernel holds in the tables' maps: `SG_PROTO`,
    /// `SG_ADDR`, `SG_PORT`.
    pub fn table_entries(&self) -> anyhow::Result<[usize; 3]> {
        let proto = BpfHashMap::<_, ProtoKey, Bitmap>::try_from(self.map_ref(maps::PROTO)?)?;
        let addr = LpmTrie::<_, AddrKey, Bitmap>::try_from(self.map_ref(maps::ADDR)?)?;
        let port = LpmTrie::<_, PortKey, Bitmap>::try_from(self.map_ref(maps::PORT)?)?;
        Ok([
            proto.keys().count(),
            addr.keys().count(),
            port.keys().count(),
        ])
    }

    /// The ids of the tables installed now (not those retired), each once
    /// however many interfaces share it.
    pub fn tables_installed(&self) -> Vec<u32> {
        self.live.keys().copied().collect()
    }

    /// Removes the entries of tables no interface points at, their rule
    /// counters included (kept for [`Dataplane::take_freed_counts`]), and
    /// returns their ids to the allocator: a table that reuses an id
    /// starts from no counts.
    fn remove_tables(&mut self, tables: Vec<TableKeys>) {
        let ids: Vec<u32> = tables.iter().map(|t| t.id).collect();
        match self.remove_rule_counters(&ids) {
            Ok(counts) => self.freed_counts.extend(counts),
            Err(e) => tracing::warn!("freeing the rule counters of tables {ids:?}: {e:#}"),
        }
        for keys in tables {
            if let Err(e) = self.remove_entries(&keys) {
                tracing::warn!(table = keys.id, "freeing a table: {e:#}");
            }
            self.free_tables.push(keys.id);
        }
    }

    fn remove_entries(&mut self, keys: &TableKeys) -> anyhow::Result<()> {
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
        Ok(())
    }
}
