//! The kernel's session table (and remembered first fragments), seen from
//! userspace: listing sessions, sweeping the expired ones (and ended ones
//! no drop rule ends any more) out to make room, and forgetting them all.

use anyhow::anyhow;
use aya::maps::{HashMap as BpfHashMap, MapData};
use sg_common::{CtKey, CtValue, FragKey, FragValue, SessionTimeouts, maps};

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

    /// Frees the memory of sessions that expired (by the idle timeout of
    /// their state), and of ended sessions that `still_ended` says no drop
    /// rule ends any more. The kernel already treats both as absent (an
    /// ended one at its next packet); this only makes room. An entry is
    /// re-read just before it is deleted and kept if a packet touched it
    /// since it was found. Returns how many were freed.
    pub fn sweep_sessions(
        &mut self,
        timeouts: &SessionTimeouts,
        still_ended: impl Fn(&CtKey, &CtValue) -> bool,
    ) -> anyhow::Result<usize> {
        let now = boot_time_ns();
        let mut ct: BpfHashMap<_, CtKey, CtValue> =
            BpfHashMap::try_from(self.map(maps::CONNTRACK)?)?;
        let done: Vec<(CtKey, CtValue)> = ct
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| match v.ended {
                0 => timeouts.expired(v.state, v.last_seen_ns, now),
                _ => !still_ended(k, v),
            })
            .collect();
        let mut freed = 0;
        for (key, seen) in done {
            // Touched (or gone) since it was found: keep it.
            let untouched = ct.get(&key, 0).is_ok_and(|v| {
                (v.last_seen_ns, v.state, v.ended) == (seen.last_seen_ns, seen.state, seen.ended)
            });
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
