//! The map memory of the loaded object: the `memlock` the kernel charges
//! for each BPF map this process holds (`/proc/self/fdinfo`), each map
//! once however many descriptors name it.

use std::collections::BTreeMap;

/// One map: its name and the bytes charged for it.
#[allow(dead_code)] // as `maps`
pub struct MapMemory {
    pub name: String,
    pub bytes: u64,
}

/// `memlock` of every BPF map this process holds, by map id.
pub fn memlock_by_id() -> BTreeMap<u32, u64> {
    let mut by_id: BTreeMap<u32, u64> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").expect("read /proc/self/fdinfo") {
        let Ok(text) = std::fs::read_to_string(entry.expect("fdinfo entry").path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) {
            by_id.insert(id as u32, memlock);
        }
    }
    by_id
}

/// Every map this process holds, largest first.
#[allow(dead_code)] // the dataplane benchmark uses `memlock_by_id` alone
pub fn maps() -> Vec<MapMemory> {
    let by_id = memlock_by_id();
    let mut out: Vec<MapMemory> = by_id
        .into_iter()
        .map(|(id, bytes)| MapMemory {
            name: aya::maps::MapInfo::from_id(id)
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("map {id}")),
            bytes,
        })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    out
}

#[allow(dead_code)] // as `maps`
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
