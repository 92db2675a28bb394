//! The kernel's session table (and remembered first fragments), seen from
//! userspace: listing sessions, sweeping the expired ones out to make
//! room, and forgetting them all.

use anyhow::anyhow;
use aya::maps::{HashMap as BpfHashMap, MapData};
use sg_common::{CtKey, CtValue, FragKey, FragValue, maps};

use super::Dataplane;
use crate::clock::boot_time_ns;

impl Dataplane {
    /// Tracked sessions (live or expired but not yet evicted).
    pub fn sessions(&self) -> anyhow::Result<Vec<(CtKey, CtValue)>> {
        let map = self
            .ebpf
            .map(maps::CONNTRACK)
            .ok_or_else(|| anyhow!("map {} missing", maps::CONNTRACK))?;
        let ct: BpfHashMap<&MapData, CtKey, CtValue> = BpfHashMap::try_from(map)?;
        Ok(ct.iter().filter_map(Result::ok).collect())
    }

    /// Frees the memory of sessions idle for longer than `timeout_ns`. The
    /// kernel already treats them as absent; this only makes room. An entry
    /// is re-read just before it is deleted and kept if a packet touched it
    /// since it was found idle. Returns how many were freed.
    pub fn sweep_sessions(&mut self, timeout_ns: u64) -> anyhow::Result<usize> {
        let now = boot_time_ns();
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
}
