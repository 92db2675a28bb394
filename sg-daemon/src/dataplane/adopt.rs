//! Taking over from a previous daemon: the tables its interfaces still use
//! (read back from the pinned maps, with how many interfaces share each;
//! their content is not known, so later changes write tables of their
//! own rather than share these), the ones it switched away from, its
//! ruleset epoch and anti-spoofing entries, and which interfaces it had
//! tables, links or classic TC filters on. Its pinned links and filters
//! themselves are taken over one by one when the interface is attached
//! again ([`Dataplane::attach`]).

use std::collections::HashMap;

use aya::{
    Pod,
    maps::{
        HashMap as BpfHashMap,
        lpm_trie::{Key, LpmTrie},
    },
};
use sg_common::{AddrKey, Bitmap, InterfaceConfig, PortKey, ProtoKey, maps};

use super::{
    Dataplane, TableKeys,
    shared::{Installed, LiveTable},
};

impl Dataplane {
    /// Takes over what an earlier daemon left in the pinned maps: which
    /// tables each interface uses (kept until replaced), which are garbage,
    /// the ruleset epoch, and the anti-spoofing entries.
    pub(super) fn adopt(&mut self) -> anyhow::Result<()> {
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
        let addr = self.trie_keys::<AddrKey, Bitmap>(maps::ADDR)?;
        let port = self.trie_keys::<PortKey, Bitmap>(maps::PORT)?;
        let instance = self.trie_keys::<AddrKey, u8>(maps::INSTANCE_ADDRS)?;

        let mut by_table: HashMap<u32, TableKeys> = HashMap::new();
        fn table(by: &mut HashMap<u32, TableKeys>, id: u32) -> &mut TableKeys {
            by.entry(id).or_insert_with(|| TableKeys::empty(id))
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
            for id in config.tables {
                used.push(id);
                // Several interfaces may share a table: each is a user.
                let keys = by_table.remove(&id);
                let live = self.live.entry(id).or_insert_with(|| LiveTable {
                    keys: keys.unwrap_or_else(|| TableKeys::empty(id)),
                    users: 0,
                    // Its content is not known here: not shared again.
                    content: None,
                });
                live.users += 1;
            }
            let installed = Installed {
                ids: config.tables,
                flags: config.flags,
            };
            self.installed.insert(*ifindex, installed);
            self.adopt_iface_slot(*ifindex, config.slot);
            self.epoch = self.epoch.max(config.epoch);
        }
        used.extend(by_table.keys());
        self.retire(by_table.into_values().collect());
        self.free_tables.retain(|id| !used.contains(id));
        // Counters of ids an earlier daemon freed without clearing them.
        let free = self.free_tables.clone();
        self.remove_rule_counters(&free)?;
        Ok(())
    }

    /// Every key of the LPM trie map `name` (whose values are `V`s).
    fn trie_keys<K: Pod, V: Pod>(&self, name: &str) -> anyhow::Result<Vec<Key<K>>> {
        let trie = LpmTrie::<_, K, V>::try_from(self.map_ref(name)?)?;
        Ok(trie.keys().filter_map(Result::ok).collect())
    }

    /// Interface indexes that have tables, pinned links or sg's classic TC
    /// filters, from this or an earlier daemon.
    pub fn known_ifindexes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.installed.keys().copied().collect();
        if let Some(pins) = &self.pins {
            out.extend(pins.linked_ifindexes());
        }
        out.sort();
        out.dedup();
        out
    }
}
