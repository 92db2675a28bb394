//! The limits of SPEC §4 in one place, and the per-interface rule quota
//! they are counted by.

use std::{collections::HashMap, ops::RangeInclusive};

use super::schema;

/// Groups bound to one interface.
pub const MAX_GROUPS_PER_INTERFACE: usize = 10;
/// Rules of one interface, ingress and egress together, lists counted at
/// their `max_entries`.
pub const MAX_RULES_PER_INTERFACE: usize = 1000;
/// Rules of one group that reference a group.
pub const MAX_GROUP_REFERENCES_PER_GROUP: usize = 20;
/// Private addresses of a basic group: its `members` plus the addresses
/// of the instances bound to it on this host.
pub const MAX_ADDRESSES_BASIC_GROUP: usize = 6_000;
/// Private addresses of an enterprise group, counted alike.
pub const MAX_ADDRESSES_ENTERPRISE_GROUP: usize = 65_536;
/// Rule priorities; 1 is the strongest.
pub const PRIORITY_RANGE: RangeInclusive<i64> = 1..=100;
/// Entries of a prefix list or a port list (`max_entries`).
pub const LIST_ENTRIES_RANGE: RangeInclusive<usize> = 1..=MAX_RULES_PER_INTERFACE;
/// `session_timeout_secs`, `syn_timeout_secs`, `tcp_closed_timeout_secs`:
/// up to a week.
pub const SESSION_TIMEOUT_RANGE: RangeInclusive<u64> = 1..=86_400 * 7;
/// `session_table_size`: entries of the answered session table (the
/// unanswered one holds a quarter, see `dataplane::table_capacities`).
pub const SESSION_TABLE_SIZE_RANGE: RangeInclusive<u64> = 1024..=16_777_216;
/// The default `session_table_size` when any binding is in hypervisor
/// mode (one host, many instances); otherwise `CONNTRACK_ENTRIES`.
pub const SESSION_TABLE_SIZE_HYPERVISOR: u32 = 262_144;
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// The prefix of every group id.
pub const GROUP_ID_PREFIX: &str = "sg-";
/// The prefix of every prefix list id.
pub const PREFIX_LIST_ID_PREFIX: &str = "pl-";
/// The prefix of every port list id.
pub const PORT_LIST_ID_PREFIX: &str = "prl-";
/// Characters of group, list and rule ids (ECS): letters, digits and
/// these; a rule id may also have `/` (the generated ids
/// `sg-web/ingress/a9921e34`), never first.
pub const ID_PUNCTUATION: &[char] = &['-', '_', '.'];
/// Characters of a group, list or rule id.
pub const ID_LEN_RANGE: RangeInclusive<usize> = 1..=128;
/// Characters of a group or list `name` (ECS).
pub const NAME_LEN_RANGE: RangeInclusive<usize> = 2..=128;
/// Characters of a `description` (ECS).
pub const MAX_DESCRIPTION_LEN: usize = 512;

/// How many rules a group counts toward the per-interface quota (SPEC §2,
/// §4): one per rule, or a referenced list's `max_entries` (the maps
/// give it by list id).
pub fn rule_quota(
    g: &schema::Group,
    prefix_list_sizes: &HashMap<&str, usize>,
    port_list_sizes: &HashMap<&str, usize>,
) -> usize {
    let size = |sizes: &HashMap<&str, usize>, id: &Option<String>| {
        id.as_deref().and_then(|id| sizes.get(id)).copied()
    };
    g.ingress
        .iter()
        .chain(&g.egress)
        .map(|r| {
            let prefixes = size(prefix_list_sizes, &r.source_prefix_list_id)
                .max(size(prefix_list_sizes, &r.dest_prefix_list_id));
            let ports = size(port_list_sizes, &r.port_range_list_id);
            prefixes.unwrap_or(1).max(ports.unwrap_or(1))
        })
        .sum()
}

/// `retention_days` of a snapshot policy (seed 002; default 1).
pub const SNAPSHOT_RETENTION_DAYS_RANGE: RangeInclusive<i64> = 1..=30;
/// Groups one snapshot policy may cover (seed 002).
pub const MAX_GROUPS_PER_SNAPSHOT_POLICY: usize = 10;
/// `[daemon] snapshot_delay_secs`: from a rule change to its snapshot
/// (the seeds' 5 minutes by default); up to a day.
pub const SNAPSHOT_DELAY_RANGE: RangeInclusive<i64> = 0..=86_400;
pub const SNAPSHOT_DELAY_DEFAULT_SECS: u64 = 300;

/// `[datastore] lease_ttl_secs`: how long a host that stopped answering
/// keeps its instances in groups elsewhere.
pub const LEASE_TTL_RANGE: RangeInclusive<i64> = 2..=300;
pub const LEASE_TTL_DEFAULT_SECS: u64 = 10;
