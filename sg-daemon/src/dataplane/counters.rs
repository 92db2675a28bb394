//! Interface counters: each bound interface has a counter slot, which the
//! daemon assigns and writes into its `SG_INTERFACES` entry; the kernel
//! counts packets and bytes per (slot, direction, verdict) in a per-CPU
//! array (`SG_IFACE_COUNTERS`, `sg_common::maps::iface_counter_index`), one
//! array access a packet instead of a hash lookup. A slot is zeroed when
//! it is given to an interface and freed when the interface is unbound; a
//! daemon taking over reads the slots back from `SG_INTERFACES`.

use anyhow::anyhow;
use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use sg_common::{
    Counter, IfaceCounterKey,
    maps::{self, IFACE_COUNTER_SLOTS, iface_counter_index},
};

use super::Dataplane;

/// The free slots, popped from the end: low slots first.
pub(super) fn all_slots() -> Vec<u32> {
    (0..IFACE_COUNTER_SLOTS).rev().collect()
}

impl Dataplane {
    /// The counter slot of `ifindex`: the one it has, or a fresh one, its
    /// counters zeroed.
    pub(super) fn iface_slot(&mut self, ifindex: u32) -> anyhow::Result<u32> {
        if let Some(&slot) = self.iface_slots.get(&ifindex) {
            return Ok(slot);
        }
        let slot = self.free_slots.pop().ok_or_else(|| {
            anyhow!("all {IFACE_COUNTER_SLOTS} interface counter slots are in use")
        })?;
        if let Err(e) = self.zero_slot(slot) {
            self.free_slots.push(slot);
            return Err(e);
        }
        self.iface_slots.insert(ifindex, slot);
        Ok(slot)
    }

    /// `ifindex` is no longer bound: its slot is free again.
    pub(super) fn free_iface_slot(&mut self, ifindex: u32) {
        if let Some(slot) = self.iface_slots.remove(&ifindex) {
            self.free_slots.push(slot);
        }
    }

    /// A daemon taking over: `ifindex` keeps the slot its entry names.
    pub(super) fn adopt_iface_slot(&mut self, ifindex: u32, slot: u32) {
        if let Some(at) = self.free_slots.iter().position(|&s| s == slot) {
            self.free_slots.remove(at);
            self.iface_slots.insert(ifindex, slot);
        }
    }

    fn zero_slot(&mut self, slot: u32) -> anyhow::Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut array: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(self.map(maps::IFACE_COUNTERS)?)?;
        for index in iface_counter_index(slot, 0, 0)..iface_counter_index(slot + 1, 0, 0) {
            array.set(
                index,
                PerCpuValues::try_from(vec![Counter::default(); cpus])?,
                0,
            )?;
        }
        Ok(())
    }

    /// Packets and bytes per (interface, direction, verdict), summed over
    /// CPUs, for the bound interfaces (counters that moved only).
    pub fn interface_counters(&self) -> anyhow::Result<Vec<(IfaceCounterKey, Counter)>> {
        let array: PerCpuArray<&MapData, Counter> =
            PerCpuArray::try_from(self.map_ref(maps::IFACE_COUNTERS)?)?;
        let mut out = Vec::new();
        for (&ifindex, &slot) in &self.iface_slots {
            for dir in 0..2u8 {
                for accepted in 0..2u8 {
                    let index = iface_counter_index(slot, dir.into(), accepted.into());
                    let total = array
                        .get(&index, 0)?
                        .iter()
                        .fold(Counter::default(), |a, c| Counter {
                            packets: a.packets + c.packets,
                            bytes: a.bytes + c.bytes,
                        });
                    if total.packets > 0 {
                        let key = IfaceCounterKey {
                            ifindex,
                            dir,
                            accepted,
                            _pad: [0; 2],
                        };
                        out.push((key, total));
                    }
                }
            }
        }
        out.sort_by_key(|(k, _)| (k.ifindex, k.dir, k.accepted));
        Ok(out)
    }
}
