//! Compiled tables in the kernel's maps: the table-id allocator, writing a
//! table under a free id, switching an interface to new tables
//! ([`Dataplane::install`]) and freeing the tables it was switched away
//! from. The anti-spoofing addresses and MAC of an interface live here
//! too: like its tables they are entries keyed by the interface, written
//! at each apply and removed with it.
//!
//! Double buffering: a ruleset change writes complete new tables under
//! fresh table ids, then replaces the interface's `SG_INTERFACES` entry in
//! one map update. A packet reads that entry once, so it sees the old
//! tables or the new ones, never a mix. The old tables are freed later
//! ([`Dataplane::collect_garbage`]), once no packet can still be using them.

use std::net::IpAddr;

use anyhow::{Context as _, anyhow};
use aya::{
    Pod,
    maps::{
        Array, HashMap as BpfHashMap,
        lpm_trie::{Key, LpmTrie},
    },
};
use sg_common::{
    AddrKey, Bitmap, DIM_LOCAL, InstanceMac, InterfaceConfig, MAX_TABLES, PortKey, ProtoKey,
    TableInfo, maps,
};

use super::Dataplane;
use crate::compile::CompiledTable;

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

fn same_key(a: &Key<AddrKey>, b: &Key<AddrKey>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}

impl Dataplane {
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

    /// Sets the addresses a hypervisor-mode instance may send from and the
    /// source MAC it is pinned to, if any; an empty list and `None` remove
    /// them (instance mode).
    pub fn set_instance_addresses(
        &mut self,
        ifindex: u32,
        addrs: &[IpAddr],
        mac: Option<InstanceMac>,
    ) -> anyhow::Result<()> {
        let mut macs: BpfHashMap<_, u32, InstanceMac> =
            BpfHashMap::try_from(self.map(maps::INSTANCE_MACS)?)?;
        match mac {
            Some(mac) => macs
                .insert(ifindex, mac, 0)
                .context("writing SG_INSTANCE_MACS")?,
            None => {
                let _ = macs.remove(&ifindex);
            }
        }
        let keys: Vec<Key<AddrKey>> = addrs
            .iter()
            .map(|a| {
                let (family, addr) = sg_common::addr::to_bytes(*a);
                Key::new(
                    AddrKey::host_bits(family),
                    AddrKey::new(ifindex, DIM_LOCAL, family, addr),
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

    /// Removes the entries of tables no interface points at, and returns
    /// their ids to the allocator.
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
}
