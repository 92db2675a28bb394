//! The compiled tables of a whole config, each distinct table compiled and
//! checked once. A binding's tables depend only on its list of groups
//! (the groups' rules and members are the config's), so the effective
//! tables are built once per distinct list; equal tables are compiled and
//! verified once, and kept for the next apply, so that a change compiles
//! only the tables it changed. Only the tables in use are kept.

use std::{collections::HashMap, sync::Arc};

use anyhow::anyhow;

use crate::{
    compile::{CompiledTable, Table, build_table, compile},
    model::{Addresses, Config, Direction, InterfaceBinding},
    reference::Interface,
    verify::verify,
};

/// Compiled tables by content, kept from one apply to the next.
#[derive(Default)]
pub struct CompileCache {
    /// Per direction (`Direction::index`).
    tables: [HashMap<Table, Arc<CompiledTable>>; 2],
}

/// A table to compile, and a binding that uses it (to verify it with).
struct Pending<'a> {
    dir: Direction,
    table: &'a Table,
    binding: &'a InterfaceBinding,
}

impl CompileCache {
    /// The (inbound, outbound) tables of each binding of `config`, in
    /// order, each checked against the reference decision. Bindings with
    /// equal tables get the same `Arc`s. On error nothing is kept, the
    /// cache stays as it was, and the error names a binding whose table
    /// failed.
    pub fn compile_all(
        &mut self,
        config: &Config,
        addresses: &Addresses,
    ) -> anyhow::Result<Vec<[Arc<CompiledTable>; 2]>> {
        // Built once per distinct list of groups.
        let mut by_groups: HashMap<&[String], usize> = HashMap::new();
        let mut distinct: Vec<(&InterfaceBinding, [Table; 2])> = Vec::new();
        let mut of_binding = Vec::with_capacity(config.interfaces.len());
        for binding in &config.interfaces {
            let at = *by_groups
                .entry(&binding.security_groups)
                .or_insert_with(|| {
                    let tables =
                        Direction::BOTH.map(|dir| build_table(config, binding, addresses, dir));
                    distinct.push((binding, tables));
                    distinct.len() - 1
                });
            of_binding.push(at);
        }
        // Compiled once per distinct table that the cache lacks.
        let mut pending: Vec<Pending> = Vec::new();
        let mut queued: HashMap<(Direction, &Table), ()> = HashMap::new();
        for (binding, tables) in &distinct {
            for (dir, table) in Direction::BOTH.into_iter().zip(tables) {
                let cached = self.tables[dir.index()].contains_key(table);
                if !cached && queued.insert((dir, table), ()).is_none() {
                    pending.push(Pending {
                        dir,
                        table,
                        binding,
                    });
                }
            }
        }
        let results = compile_and_verify(config, addresses, &pending);
        let mut fresh: HashMap<(Direction, &Table), Arc<CompiledTable>> = HashMap::new();
        for (p, result) in pending.iter().zip(results) {
            let compiled = result.map_err(|e| anyhow!("interface {}: {e:#}", p.binding.name))?;
            fresh.insert((p.dir, p.table), Arc::new(compiled));
        }
        let per_distinct: Vec<[Arc<CompiledTable>; 2]> = distinct
            .iter()
            .map(|(_, tables)| {
                [0, 1].map(|i| match fresh.get(&(Direction::BOTH[i], &tables[i])) {
                    Some(c) => c.clone(),
                    None => self.tables[i][&tables[i]].clone(),
                })
            })
            .collect();
        drop(fresh);
        drop(queued);
        drop(pending);
        // Only what is in use is kept.
        let mut kept: [HashMap<Table, Arc<CompiledTable>>; 2] = Default::default();
        for ((_, tables), compiled) in distinct.into_iter().zip(&per_distinct) {
            for (i, table) in tables.into_iter().enumerate() {
                kept[i].insert(table, compiled[i].clone());
            }
        }
        self.tables = kept;
        Ok(of_binding
            .into_iter()
            .map(|at| per_distinct[at].clone())
            .collect())
    }

    /// How many distinct tables are kept.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compiles and verifies each pending table, on as many threads as the
/// host has (tables are independent).
fn compile_and_verify(
    config: &Config,
    addresses: &Addresses,
    pending: &[Pending],
) -> Vec<anyhow::Result<CompiledTable>> {
    let one = |p: &Pending| -> anyhow::Result<CompiledTable> {
        let iface = Interface {
            config,
            binding: p.binding,
            addresses,
        };
        let compiled = compile(p.table)?;
        verify(&iface, p.dir, p.table, &compiled).map_err(|m| anyhow!("{m}"))?;
        Ok(compiled)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(pending.len());
    if threads <= 1 {
        return pending.iter().map(one).collect();
    }
    let mut results: Vec<Option<anyhow::Result<CompiledTable>>> =
        pending.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let one = &one;
                s.spawn(move || {
                    (t..pending.len())
                        .step_by(threads)
                        .map(|i| (i, one(&pending[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (i, result) in worker.join().expect("a compiler thread panicked") {
                results[i] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every table compiled"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// sg-a and sg-b; eth0 and eth1 on sg-a, eth2 on both. `port` is
    /// sg-b's rule's.
    fn config(port: u16) -> Config {
        let text = format!(
            r#"
[[security_group]]
id = "sg-a"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "198.51.100.0/24"
[[security_group]]
id = "sg-b"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "{port}/{port}"
  source_cidr_ip = "0.0.0.0/0"
[[interface]]
name = "eth0"
security_groups = ["sg-a"]
[[interface]]
name = "eth1"
security_groups = ["sg-a"]
[[interface]]
name = "eth2"
security_groups = ["sg-a", "sg-b"]
"#
        );
        crate::config::parse(Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn equal_tables_are_compiled_once_and_kept_for_the_next_apply() {
        let mut cache = CompileCache::default();
        let first = config(80);
        let addresses = Addresses::resolve(&first, |_| Vec::new());
        let tables = cache.compile_all(&first, &addresses).unwrap();
        // eth0 and eth1 get the same compilation; eth2 its own inbound
        // table; every outbound table is the same (no outbound rules).
        assert!(Arc::ptr_eq(&tables[0][0], &tables[1][0]));
        assert!(!Arc::ptr_eq(&tables[0][0], &tables[2][0]));
        assert!(Arc::ptr_eq(&tables[0][1], &tables[2][1]));
        assert_eq!(cache.len(), 3);
        // sg-b changes: eth0's and eth1's tables are the ones kept.
        let second = config(443);
        let again = cache.compile_all(&second, &addresses).unwrap();
        assert!(Arc::ptr_eq(&tables[0][0], &again[0][0]));
        assert!(Arc::ptr_eq(&tables[0][1], &again[2][1]));
        assert!(!Arc::ptr_eq(&tables[2][0], &again[2][0]));
        // Only what is in use is kept: eth2's old inbound table is gone.
        assert_eq!(cache.len(), 3);
    }
}
