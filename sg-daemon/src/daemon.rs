//! Applying a validated config to the host: compile every bound interface
//! first (so a config that cannot be compiled changes nothing; each
//! distinct table once, see [`crate::compiled`]), then switch the present
//! interfaces whose tables changed and attach the classifier. An
//! interface whose link type sg cannot parse is left alone and reported
//! (see [`crate::linktype`]). Per-rule counters are kept per interface,
//! also for tables that interfaces share.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use anyhow::Context as _;
use nix::{ifaddrs::getifaddrs, net::if_::if_nametoindex};
use sg_common::{Counter, IFACE_HYPERVISOR};
use tracing::{info, warn};

use crate::{
    compile::{CompiledTable, Origin, build_table, compile},
    compiled::CompileCache,
    dataplane::{
        Dataplane,
        expedite::{self, ExpeditedRcu},
    },
    linktype::link_header,
    model::{Addresses, AttachMode, BindingMode, Config, Direction, InterfaceBinding},
    reference::Interface,
    verify::verify,
};

pub struct Daemon {
    dataplane: Dataplane,
    /// Enforced interfaces: name to ifindex.
    enforced: HashMap<String, u32>,
    /// The addresses the enforced tables were compiled with.
    addresses: Addresses,
    /// Kernel table id to what its rule indices stand for, for counters
    /// and drop records (kept while the table may still be reported).
    tables: HashMap<u32, NamedTable>,
    /// Per rule of an interface and direction: the counts of the tables
    /// freed, or left by the interface, since the rule was added (see
    /// [`Daemon::rule_counts`]).
    base: HashMap<RuleKey, Counter>,
    /// The tables of the config in force, compiled: a change compiles only
    /// what it changed.
    compiled: CompileCache,
}

/// A rule of an interface and direction: what its counters follow.
type RuleKey = (String, Direction, Origin);

/// The rules behind a kernel table (which any number of interfaces may
/// share).
#[derive(Debug, Clone)]
pub struct NamedTable {
    pub direction: Direction,
    pub origins: Vec<Origin>,
    /// The same origins, to look them up.
    holds: HashSet<Origin>,
}

impl NamedTable {
    fn new(direction: Direction, origins: &[Origin]) -> NamedTable {
        NamedTable {
            direction,
            origins: origins.to_vec(),
            holds: origins.iter().cloned().collect(),
        }
    }
}

/// Packets and bytes a rule decided on one interface and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    pub interface: String,
    pub direction: Direction,
    pub origin: Origin,
    pub packets: u64,
    pub bytes: u64,
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub enforced: Vec<String>,
    /// Bound in the config but not present on this host (yet).
    pub missing: Vec<String>,
    /// Present, but of a link type sg cannot parse: not enforced. Each
    /// with the reason.
    pub unsupported: Vec<(String, String)>,
    pub released: Vec<String>,
}

impl Daemon {
    /// Loads the program with its maps pinned under `bpffs_dir`, taking
    /// over what a previous daemon left (sessions, links: enforcement never
    /// stops; sessions of an earlier map layout are migrated), and applies
    /// `config`. Interfaces the previous daemon
    /// enforced that `config` no longer binds are released.
    pub fn start(config: &Config) -> anyhow::Result<(Self, ApplyReport)> {
        expedite::restore_after_crash(&config.daemon.runtime_dir);
        let dataplane = Dataplane::open_pinned(&config.daemon)?;
        let mut daemon = Daemon {
            dataplane,
            enforced: HashMap::new(),
            addresses: Addresses::default(),
            tables: HashMap::new(),
            base: HashMap::new(),
            compiled: CompileCache::default(),
        };
        let mut report = daemon.apply(config)?;
        let enforced: Vec<u32> = daemon.enforced.values().copied().collect();
        for ifindex in daemon.dataplane.known_ifindexes() {
            if !enforced.contains(&ifindex) {
                daemon.dataplane.uninstall(ifindex)?;
                daemon.dataplane.release(ifindex);
                info!(
                    ifindex,
                    "released an interface the previous daemon enforced"
                );
                report.released.push(format!("ifindex {ifindex}"));
            }
        }
        // Every interface runs this program now: the earlier one, if its
        // map layout differed, adds no more sessions to its tables.
        daemon
            .dataplane
            .finish_migration(&config.daemon.session_timeouts());
        Ok((daemon, report))
    }

    /// Stops for good: removes every pin, so that the programs leave every
    /// interface when this process exits.
    pub fn detach_everything(&mut self) -> anyhow::Result<()> {
        self.dataplane.unpin_all()
    }

    /// The addresses the enforced tables were compiled with (members,
    /// instances).
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dataplane
    }

    /// Frees the tables switched away from at least a grace period ago
    /// (see [`Dataplane::collect_garbage`]), and forgets their rules.
    pub fn collect_garbage(&mut self) -> anyhow::Result<()> {
        self.dataplane.collect_garbage()?;
        self.fold_freed();
        Ok(())
    }

    /// Adds the final counts of the tables the dataplane freed, and of
    /// the interfaces that left a shared table, to the rules they held
    /// that are still enforced there, and forgets the freed tables: before
    /// their ids are reused.
    fn fold_freed(&mut self) {
        let names = self.names();
        let freed = self.freed_rule_counts(&names);
        self.fold(freed);
    }

    /// Enforced interfaces by ifindex (owned: to name counters after the
    /// names change).
    fn names(&self) -> HashMap<u32, String> {
        let names = self.enforced.iter();
        names.map(|(name, i)| (*i, name.clone())).collect()
    }

    /// The counts the dataplane freed or took since last asked, each with
    /// its rule on the interface `names` calls its index.
    fn freed_rule_counts(&mut self, names: &HashMap<u32, String>) -> Vec<(RuleKey, Counter)> {
        let freed = self.dataplane.take_freed_counts();
        let names: HashMap<u32, &str> = names.iter().map(|(i, n)| (*i, n.as_str())).collect();
        freed
            .iter()
            .filter_map(|(key, counter)| Some((self.rule_key(&names, key)?, *counter)))
            .collect()
    }

    /// Adds `counts` to the rules still enforced, and forgets the freed
    /// tables and the rules no longer enforced.
    fn fold(&mut self, counts: Vec<(RuleKey, Counter)>) {
        let to_rules: Vec<(RuleKey, Counter)> = counts
            .into_iter()
            .filter(|(rule, _)| self.is_current(rule))
            .collect();
        for (rule, counter) in to_rules {
            add(self.base.entry(rule).or_default(), &counter);
        }
        let live: HashSet<u32> = self.dataplane.tables_in_use().into_iter().collect();
        self.tables.retain(|id, _| live.contains(id));
        let base = std::mem::take(&mut self.base);
        self.base = base
            .into_iter()
            .filter(|(rule, _)| self.is_current(rule))
            .collect();
    }

    /// Enforced interfaces by ifindex.
    fn names_by_ifindex(&self) -> HashMap<u32, &str> {
        let names = self.enforced.iter();
        names.map(|(name, i)| (*i, name.as_str())).collect()
    }

    /// The rule of an interface and direction a kernel counter counts for.
    fn rule_key(
        &self,
        names: &HashMap<u32, &str>,
        key: &sg_common::RuleCounterKey,
    ) -> Option<RuleKey> {
        let (named, origin) = self.rule(key.table, key.rule)?;
        let name = names.get(&key.ifindex)?;
        Some((name.to_string(), named.direction, origin.clone()))
    }

    /// Whether the interface enforces the rule in that direction now.
    fn is_current(&self, (name, dir, origin): &RuleKey) -> bool {
        let ids = self
            .enforced
            .get(name)
            .and_then(|ifindex| self.dataplane.tables_of(*ifindex));
        ids.and_then(|ids| self.tables.get(&ids[dir.index()]))
            .is_some_and(|named| named.holds.contains(origin))
    }

    /// Frees expired sessions, and ended ones that no drop rule of
    /// `config` ends any more (see [`Dataplane::sweep_sessions`]); those of
    /// interfaces no longer enforced are no longer ended either.
    pub fn sweep_sessions(&mut self, config: &Config) -> anyhow::Result<usize> {
        let (enforced, addresses) = (&self.enforced, &self.addresses);
        let still_ended = |key: &sg_common::CtKey, value: &sg_common::CtValue| {
            let binding = config
                .interfaces
                .iter()
                .find(|b| enforced.get(&b.name) == Some(&key.ifindex));
            binding.is_some_and(|binding| {
                let iface = Interface {
                    config,
                    binding,
                    addresses,
                };
                crate::sessions::stays_ended(&iface, key, value)
            })
        };
        self.dataplane
            .sweep_sessions(&config.daemon.session_timeouts(), still_ended)
    }

    /// The name of an enforced interface.
    pub fn interface_name(&self, ifindex: u32) -> Option<String> {
        self.enforced
            .iter()
            .find(|(_, i)| **i == ifindex)
            .map(|(name, _)| name.clone())
    }

    /// The rule behind a kernel table's rule index, if known.
    pub fn rule(&self, table: u32, rule: u32) -> Option<(&NamedTable, &Origin)> {
        let named = self.tables.get(&table)?;
        Some((named, named.origins.get(rule as usize)?))
    }

    /// Per-rule counters of the rules enforced now, each following its
    /// rule id across changes: the counts of the tables freed since the
    /// rule was added, plus those of the tables that hold it now (the
    /// current one, and those retired but not yet freed). Rules that
    /// have counted nothing yet are left out, and so are rules no longer
    /// enforced.
    pub fn rule_counts(&self) -> anyhow::Result<Vec<RuleCount>> {
        let names = self.names_by_ifindex();
        let mut sums = self.base.clone();
        for (key, counter) in self.dataplane.rule_counters()? {
            let Some(rule) = self.rule_key(&names, &key) else {
                continue;
            };
            if self.is_current(&rule) {
                add(sums.entry(rule).or_default(), &counter);
            }
        }
        Ok(sums
            .into_iter()
            .filter(|(rule, _)| self.is_current(rule))
            .map(|((interface, direction, origin), c)| RuleCount {
                interface,
                direction,
                origin,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect())
    }

    /// Whether the host's interfaces (present, index, addresses) are still
    /// those `config` was last applied with; if not, [`Daemon::apply`]
    /// again (hot-plug, renames, address changes).
    pub fn in_sync(&self, config: &Config) -> bool {
        let present: HashMap<String, u32> = config
            .interfaces
            .iter()
            .filter_map(|b| Some((b.name.clone(), if_nametoindex(b.name.as_str()).ok()?)))
            .filter(|(name, _)| link_header(name).is_ok())
            .collect();
        present == self.enforced && resolve_addresses(config) == self.addresses
    }

    /// Makes the host enforce `config`. Interfaces no longer bound, or no
    /// longer present, are released; each interface switches atomically.
    pub fn apply(&mut self, config: &Config) -> anyhow::Result<ApplyReport> {
        let addresses = resolve_addresses(config);
        addresses
            .check_group_sizes(config)
            .map_err(|why| anyhow::anyhow!("not applied: {why}"))?;
        let tables = self.compiled.compile_all(config, &addresses)?;
        let compiled: Vec<(&InterfaceBinding, [Arc<CompiledTable>; 2])> =
            config.interfaces.iter().zip(tables).collect();
        let mut distinct: HashMap<*const CompiledTable, &CompiledTable> = HashMap::new();
        for table in compiled.iter().flat_map(|(_, t)| t) {
            distinct.insert(Arc::as_ptr(table), table);
        }
        Dataplane::check_restartable(distinct.into_values())
            .map_err(|why| anyhow::anyhow!("not applied: {why}"))?;

        self.dataplane.set_global(&config.daemon)?;
        let mut report = ApplyReport::default();
        // The interfaces to switch: (binding, ifindex, flags, tables).
        let mut present = Vec::new();
        // Bound names not enforced now (missing, or of a link type sg
        // cannot parse).
        let mut stopped: Vec<&String> = Vec::new();
        for (binding, tables) in &compiled {
            let Ok(ifindex) = if_nametoindex(binding.name.as_str()) else {
                warn!(interface = %binding.name, "bound interface not present; enforced when it appears");
                // It disappeared: its links died with it.
                stopped.push(&binding.name);
                report.missing.push(binding.name.clone());
                continue;
            };
            let link = match link_header(&binding.name) {
                Ok(link) => link,
                Err(why) => {
                    warn!(interface = %binding.name, "not enforced: {why}");
                    stopped.push(&binding.name);
                    report.unsupported.push((binding.name.clone(), why));
                    continue;
                }
            };
            let flags = link.iface_flags()
                | match binding.mode {
                    BindingMode::Instance => 0,
                    BindingMode::Hypervisor => IFACE_HYPERVISOR,
                };
            present.push((*binding, ifindex, flags, tables));
        }
        // The interfaces bound names are on now: a name stopped whose
        // interface another bound name holds now (renames) keeps its hooks
        // there until they are handed to that name, below.
        let held: HashSet<u32> = present.iter().map(|(_, i, _, _)| *i).collect();
        for name in stopped {
            if !self.enforced.get(name).is_some_and(|i| held.contains(i)) {
                self.stop_enforcing(name)?;
            }
        }
        // Every interface whose tables or flags changed switches, or none
        // does; the others are left alone (see `Dataplane::install_all`).
        let switches: Vec<_> = present
            .iter()
            .map(|(_, ifindex, flags, [i, o])| (*ifindex, *flags, [&**i, &**o]))
            .collect();
        let kept = "installing the new rules (every interface keeps its rules)";
        self.dataplane.make_room(&switches).context(kept)?;
        // Tables it freed: their counts go to their rules before their
        // ids are reused.
        self.fold_freed();
        // The anti-spoofing addresses first: an address taken away is
        // refused from the moment the new rules apply. (A change that
        // fails now is undone by re-applying the state in force, see
        // `api::change`.)
        for (binding, ifindex, _, _) in &present {
            let (spoof_guard, mac) = match binding.mode {
                BindingMode::Instance => (&[][..], None),
                BindingMode::Hypervisor => (addresses.instance(&binding.name), binding.mac),
            };
            self.dataplane
                .set_instance_addresses(*ifindex, spoof_guard, mac)?;
        }
        let before: HashMap<u32, Option<[u32; 2]>> = present
            .iter()
            .map(|(_, ifindex, _, _)| (*ifindex, self.dataplane.tables_of(*ifindex)))
            .collect();
        let names_before = self.names();
        self.dataplane.install_all(&switches).context(kept)?;
        // The counts of the tables interfaces left, under the names they
        // had (an index may go by another name now: renames).
        let left = self.freed_rule_counts(&names_before);
        // Names no longer enforced where they were (unbound, gone, or now
        // on another interface: one re-created, or renames), all of them
        // before any name is attached. The index a name had may be another
        // bound name's now: its entry was just installed for that name,
        // and its hooks stay, handed to that name (taking them off and
        // attaching again would leave the interface without them, and
        // fail: the kernel frees an unpinned link later, not at once).
        // Otherwise the old index's entry and hooks go.
        let now: HashMap<&str, u32> = present
            .iter()
            .map(|(b, i, _, _)| (b.name.as_str(), *i))
            .collect();
        let bound = |name: &str| config.interfaces.iter().any(|b| b.name == name);
        let gone: Vec<(String, u32)> = self
            .enforced
            .iter()
            .filter(|(name, old)| now.get(name.as_str()) != Some(*old))
            .map(|(name, old)| (name.clone(), *old))
            .collect();
        // Hooks on an interface another bound name holds now stay on it,
        // handed to that name below.
        let mut handed = HashMap::new();
        for (name, old) in gone {
            self.enforced.remove(&name);
            if held.contains(&old) {
                handed.insert(old, self.dataplane.take_hooks(&name));
            } else {
                self.dataplane.uninstall(old)?;
                self.dataplane.detach(&name, old)?;
            }
            if !bound(&name) {
                info!(interface = %name, "released");
                report.released.push(name);
            }
        }
        // Many first attaches (a hypervisor's start): each TCX one waits
        // for an RCU grace period unless they are expedited.
        let attaches = present
            .iter()
            .filter(|(b, ..)| !self.dataplane.is_attached(&b.name))
            .count();
        let _expedited = (attaches >= expedite::FROM_ATTACHES
            && self.dataplane.attach_mode() != Some(AttachMode::Tc))
        .then(|| ExpeditedRcu::begin(&config.daemon.runtime_dir))
        .flatten();
        // Each table named once per apply: a reused id may hold a new table.
        let mut named: HashSet<u32> = HashSet::new();
        for (binding, ifindex, _, [inbound, outbound]) in present {
            if let Some(hooks) = handed.remove(&ifindex) {
                self.dataplane.give_hooks(&binding.name, ifindex, hooks);
            }
            self.dataplane.attach(&binding.name, ifindex)?;
            let ids = self.dataplane.tables_of(ifindex);
            for ((id, dir), table) in ids
                .into_iter()
                .flatten()
                .zip(Direction::BOTH)
                .zip([inbound, outbound])
            {
                if named.insert(id) {
                    self.tables.insert(id, NamedTable::new(dir, &table.origins));
                }
            }
            let switched = before.get(&ifindex) != Some(&ids);
            let moved = self.enforced.insert(binding.name.clone(), ifindex) != Some(ifindex);
            if switched || moved {
                info!(
                    interface = %binding.name,
                    ifindex,
                    inbound_rules = inbound.rule_count,
                    outbound_rules = outbound.rule_count,
                    "enforced"
                );
            }
            report.enforced.push(binding.name.clone());
        }
        self.addresses = addresses;
        // Counts of interfaces that left tables go to their rules.
        let mut counts = left;
        counts.extend(self.freed_rule_counts(&self.names()));
        self.fold(counts);
        Ok(report)
    }

    /// Takes the classifier off `name` if it was enforced.
    fn stop_enforcing(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(ifindex) = self.enforced.remove(name) {
            self.dataplane.uninstall(ifindex)?;
            self.dataplane.detach(name, ifindex)?;
        }
        Ok(())
    }
}

fn add(to: &mut Counter, counter: &Counter) {
    to.packets += counter.packets;
    to.bytes += counter.bytes;
}

/// The inbound and outbound tables of one binding on its own, each
/// checked against the reference decision (an apply compiles through
/// [`CompileCache`] instead, each distinct table once). The directions are independent, so they are
/// compiled and checked on two threads.
pub fn compile_binding(
    config: &Config,
    binding: &InterfaceBinding,
    addresses: &Addresses,
) -> anyhow::Result<[CompiledTable; 2]> {
    let iface = Interface {
        config,
        binding,
        addresses,
    };
    let one = |dir: Direction| -> anyhow::Result<CompiledTable> {
        let table = build_table(config, binding, addresses, dir);
        let compiled = compile(&table)?;
        verify(&iface, dir, &table, &compiled).map_err(|m| anyhow::anyhow!("{m}"))?;
        Ok(compiled)
    };
    let [inbound, outbound] = std::thread::scope(|s| {
        let outbound = s.spawn(|| one(Direction::Egress));
        let inbound = one(Direction::Ingress);
        [
            inbound,
            outbound.join().expect("the compiler thread panicked"),
        ]
    });
    Ok([inbound?, outbound?])
}

/// The addresses of `config`'s bindings and groups, the host's own
/// addresses read once (and only if a binding lists none): reading them
/// per binding made an apply quadratic in the interfaces.
pub fn resolve_addresses(config: &Config) -> Addresses {
    let host = std::cell::OnceCell::new();
    Addresses::resolve(config, |b| {
        let host = host.get_or_init(host_addresses);
        host.get(&b.name).cloned().unwrap_or_default()
    })
}

/// An interface's own addresses: an instance-mode binding's default.
pub fn interface_addresses(name: &str) -> Vec<IpAddr> {
    host_addresses().remove(name).unwrap_or_default()
}

/// Every interface's own addresses, by name (one `getifaddrs`).
fn host_addresses() -> HashMap<String, Vec<IpAddr>> {
    let mut out: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let Ok(addrs) = getifaddrs() else {
        return out;
    };
    for a in addrs {
        let Some(addr) = a.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        out.entry(a.interface_name).or_default().push(ip);
    }
    out
}
