//! Kernel tables shared by content. A kernel table is known by what it
//! holds: its direction and the whole compiled table, rule origins
//! included (two tables with equal bitmaps but other rules must not share:
//! counters and drop records name rules through the origins). Interfaces
//! whose tables are equal use one copy, counted by its users; the copy is
//! retired when its last user leaves it.
//!
//! [`Dataplane::plan`] turns a change into what it needs: the tables to
//! write (contents no live table holds) and the interfaces that switch
//! (those whose tables or flags differ from what they have; the others
//! are left alone, keeping their ruleset epoch, so their sessions are not
//! re-checked). A change of the global flags (the SMTP block may end
//! sessions) switches every interface given, for a new epoch.

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
};

use super::{Dataplane, TableKeys, tables::Switch};
use crate::compile::CompiledTable;

/// A table in use by at least one interface.
pub(super) struct LiveTable {
    pub(super) keys: TableKeys,
    /// Interface directions pointing at it.
    pub(super) users: usize,
    /// What it holds, to share it; `None` for a table adopted from a
    /// previous daemon (its content is not known, so it is not shared).
    pub(super) content: Option<Content>,
}

/// A table's content: direction index, fingerprint, the table itself.
pub(super) struct Content {
    pub(super) dir: usize,
    pub(super) fingerprint: u64,
    pub(super) table: Box<CompiledTable>,
}

impl Content {
    fn holds(&self, dir: usize, table: &CompiledTable) -> bool {
        self.dir == dir && *self.table == *table
    }
}

/// The tables and flags an interface uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Installed {
    /// Table id per direction (`Direction::index`).
    pub(super) ids: [u32; 2],
    pub(super) flags: u32,
}

/// Where one direction of a switching interface finds its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A live table of equal content: nothing to write.
    Live(u32),
    /// The table of [`Plan::new`] at this index, to write.
    New(usize),
}

/// A table to write.
pub(super) struct NewTable<'a> {
    pub(super) dir: usize,
    pub(super) fingerprint: u64,
    pub(super) table: &'a CompiledTable,
}

/// What a change needs.
pub(super) struct Plan<'a> {
    /// Contents no live table holds, each once.
    pub(super) new: Vec<NewTable<'a>>,
    /// The interfaces that switch: (ifindex, flags, per direction where
    /// its table is). Interfaces whose tables and flags stay are left out.
    pub(super) switches: Vec<(u32, u32, [Source; 2])>,
}

/// A content's fingerprint: equal contents have equal fingerprints.
pub(super) fn fingerprint(dir: usize, table: &CompiledTable) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (dir, table).hash(&mut hasher);
    hasher.finish()
}

impl Dataplane {
    /// The tables `switches` need written and the interfaces that switch.
    /// Callers pass one `&CompiledTable` for many interfaces: each distinct
    /// reference is fingerprinted once.
    pub(super) fn plan<'a>(&self, switches: &[Switch<'a>]) -> Plan<'a> {
        let mut plan = Plan {
            new: Vec::new(),
            switches: Vec::new(),
        };
        let mut by_reference: HashMap<(usize, *const CompiledTable), Source> = HashMap::new();
        for (ifindex, flags, tables) in switches {
            let mut sources = [Source::New(0); 2];
            for (dir, table) in tables.iter().enumerate() {
                let reference = (dir, *table as *const CompiledTable);
                sources[dir] = match by_reference.get(&reference) {
                    Some(source) => *source,
                    None => {
                        let source = self.source_of(dir, table, &mut plan.new);
                        by_reference.insert(reference, source);
                        source
                    }
                };
            }
            let unchanged = !self.recheck_all
                && self
                    .installed
                    .get(ifindex)
                    .is_some_and(|now| now.flags == *flags && sources == now.ids.map(Source::Live));
            if !unchanged {
                plan.switches.push((*ifindex, *flags, sources));
            }
        }
        plan
    }

    /// A live table holding `table` in direction `dir`, or one of `new`
    /// (added to it if none is).
    fn source_of<'a>(
        &self,
        dir: usize,
        table: &'a CompiledTable,
        new: &mut Vec<NewTable<'a>>,
    ) -> Source {
        let fingerprint = fingerprint(dir, table);
        let live = self.by_content.get(&fingerprint).into_iter().flatten();
        for id in live {
            let content = self.live.get(id).and_then(|t| t.content.as_ref());
            if content.is_some_and(|c| c.holds(dir, table)) {
                return Source::Live(*id);
            }
        }
        let same = |n: &NewTable| n.fingerprint == fingerprint && n.dir == dir && n.table == table;
        if let Some(at) = new.iter().position(same) {
            return Source::New(at);
        }
        new.push(NewTable {
            dir,
            fingerprint,
            table,
        });
        Source::New(new.len() - 1)
    }

    /// Registers a table just written (no user yet).
    pub(super) fn add_live(&mut self, keys: TableKeys, new: &NewTable) {
        let id = keys.id;
        self.by_content.entry(new.fingerprint).or_default().push(id);
        let content = Content {
            dir: new.dir,
            fingerprint: new.fingerprint,
            table: Box::new(new.table.clone()),
        };
        self.live.insert(
            id,
            LiveTable {
                keys,
                users: 0,
                content: Some(content),
            },
        );
    }

    /// One more interface direction uses table `id`.
    pub(super) fn take_table(&mut self, id: u32) {
        if let Some(t) = self.live.get_mut(&id) {
            t.users += 1;
        }
    }

    /// Interface `ifindex` no longer uses table `id` (in one direction).
    /// The interface's rule counters there are taken (see
    /// [`Dataplane::take_freed_counts`]) so that they go to its rules now,
    /// under the name it had (a table retired is freed later, when the
    /// index may go by another name); a table without users is retired.
    pub(super) fn leave_table(&mut self, id: u32, ifindex: u32) {
        let Some(t) = self.live.get_mut(&id) else {
            return;
        };
        t.users = t.users.saturating_sub(1);
        self.left.push((id, ifindex));
        if t.users > 0 {
            return;
        }
        let Some(t) = self.live.remove(&id) else {
            return;
        };
        if let Some(content) = &t.content
            && let Some(ids) = self.by_content.get_mut(&content.fingerprint)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_content.remove(&content.fingerprint);
            }
        }
        self.retire(vec![t.keys]);
    }

    /// Hands the rule counters of the interfaces that left tables still in
    /// use to the freed counts.
    pub(super) fn take_left_counters(&mut self) {
        let left: std::collections::HashSet<(u32, u32)> = self.left.drain(..).collect();
        if left.is_empty() {
            return;
        }
        match self.remove_rule_counters_where(|k| left.contains(&(k.table, k.ifindex))) {
            Ok(counts) => self.freed_counts.extend(counts),
            Err(e) => tracing::warn!("taking the rule counters of interfaces that left: {e:#}"),
        }
    }
}
