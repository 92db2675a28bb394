//! What the kernel reports: decisions per reason, packets and bytes per
//! rule (per-CPU counters, summed here; per interface: `counters`), the ring of
//! drop records and the kernel's log records.

use anyhow::{Context as _, anyhow};
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use sg_common::{Counter, REASON_COUNT, Reason, RuleCounterKey, maps};

use super::Dataplane;

impl Dataplane {
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

    /// Packets and bytes per (table, rule, interface), summed over CPUs.
    pub fn rule_counters(&self) -> anyhow::Result<Vec<(RuleCounterKey, Counter)>> {
        self.per_cpu_counters(maps::RULE_COUNTERS)
    }

    /// Removes the rule counters of the tables `ids` (freed, or free),
    /// returning them.
    pub(super) fn remove_rule_counters(
        &mut self,
        ids: &[u32],
    ) -> anyhow::Result<Vec<(RuleCounterKey, Counter)>> {
        let ids: std::collections::HashSet<u32> = ids.iter().copied().collect();
        self.remove_rule_counters_where(|k| ids.contains(&k.table))
    }

    /// Removes the rule counters whose keys `which` picks, returning them.
    pub(super) fn remove_rule_counters_where(
        &mut self,
        which: impl Fn(&RuleCounterKey) -> bool,
    ) -> anyhow::Result<Vec<(RuleCounterKey, Counter)>> {
        let counts: Vec<_> = self
            .rule_counters()?
            .into_iter()
            .filter(|(k, _)| which(k))
            .collect();
        let mut map: PerCpuHashMap<_, RuleCounterKey, Counter> =
            PerCpuHashMap::try_from(self.map(maps::RULE_COUNTERS)?)?;
        for (key, _) in &counts {
            let _ = map.remove(key);
        }
        Ok(counts)
    }

    /// The final rule counters of the tables freed since the last call,
    /// and those of interfaces that left a table others still use, per
    /// (table, rule, interface): the daemon adds them to the rules the
    /// tables held before it reuses their ids.
    pub fn take_freed_counts(&mut self) -> Vec<(RuleCounterKey, Counter)> {
        std::mem::take(&mut self.freed_counts)
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
}
