//! The anti-spoofing entries of hypervisor-mode interfaces: the addresses
//! an instance may send from (`SG_INSTANCE_ADDRS`) and the source MAC it
//! is pinned to (`SG_INSTANCE_MACS`), keyed by the interface. Written at
//! each apply where they changed, removed with the interface.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::maps::{
    HashMap as BpfHashMap,
    lpm_trie::{Key, LpmTrie},
};
use sg_common::{AddrKey, DIM_LOCAL, InstanceMac, maps};

use super::Dataplane;

fn same_key(a: &Key<AddrKey>, b: &Key<AddrKey>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}

impl Dataplane {
    /// Sets the addresses a hypervisor-mode instance may send from and the
    /// source MAC it is pinned to, if any; an empty list and `None` remove
    /// them (instance mode). What this dataplane wrote last and is asked
    /// again is not written again.
    pub fn set_instance_addresses(
        &mut self,
        ifindex: u32,
        addrs: &[IpAddr],
        mac: Option<InstanceMac>,
    ) -> anyhow::Result<()> {
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
        let old = self.instance_addrs.get(&ifindex);
        let same_addrs = old.is_some_and(|old| {
            old.len() == keys.len() && old.iter().zip(&keys).all(|(a, b)| same_key(a, b))
        });
        if same_addrs && self.instance_macs.get(&ifindex) == Some(&mac) {
            return Ok(());
        }
        // Forgotten until written whole: a failure half-way is written
        // again next time.
        self.instance_macs.remove(&ifindex);
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
        self.instance_macs.insert(ifindex, mac);
        Ok(())
    }
}
