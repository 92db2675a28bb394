//! From groups to kernel tables, in two steps:
//!
//! 1. [`build_table`] (`table.rs`): the effective rule list of one
//!    interface and direction (SPEC §3 steps 1–4): all bound groups'
//!    rules, sorted by priority, drop before accept at equal priority, then
//!    binding order of the groups, then file order of the rules; the hidden
//!    intra-group accept after them; and the direction's default verdict.
//!    Group references are resolved to member addresses here.
//! 2. [`compile`] (`bitmaps.rs`): one bitmap per value class of each packet
//!    field (rule `i` is bit `i`): per protocol number, per remote- and
//!    local-address prefix (longest-prefix match), per destination- and
//!    source-port prefix. The kernel ANDs the bitmaps it finds and takes
//!    the lowest set bit. [`lookup`] (`lookup.rs`) does the same in Rust,
//!    for checks before applying.

mod bitmaps;
mod lookup;
mod table;
#[cfg(test)]
mod tests;

pub use bitmaps::{AddrEntry, CompiledTable, PortEntry, TooManyRules, addr_bytes, compile};
pub use lookup::{Lookup, lookup};
pub use table::{Fields, Origin, Table, TableRule, build_table};
