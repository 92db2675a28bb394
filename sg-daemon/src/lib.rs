//! sgd: turns security groups into eBPF maps and enforces them with a TC
//! program on each bound interface.
//!
//! - [`model`]: the validated objects (groups, rules, bindings);
//! - [`config`]: reading and validating the TOML file;
//! - [`compile`]: merged, ordered rules of an interface to bit-vector tables;
//! - [`reference`]: the decision of SPEC §3, plainly, as the yardstick;
//! - [`verify`]: compiled tables against the reference before applying;
//! - [`dataplane`]: loading the eBPF program, writing maps, attaching;
//! - [`sessions`]: the kernel's sessions in the daemon's terms (state,
//!   liveness, opening packet, what keeps an ended one ended);
//! - [`clock`]: now on the kernel's clock (`CLOCK_BOOTTIME`);
//! - [`drops`]: records of dropped packets from the kernel, named;
//! - [`fleet`]: groups, lists and policies shared through etcd, and each
//!   host's bindings published there (SPEC §8);
//! - [`metrics`]: the Prometheus text endpoint;
//! - [`links`]: interface and address changes from rtnetlink (hot-plug);
//! - [`linktype`]: an interface's link header (Ethernet, none), or why sg
//!   refuses it;
//! - [`daemon`]: applying a whole config to the interfaces, reloads;
//! - [`store`]: the desired state in the file format, persisted for the API;
//! - [`drift`]: what API changes made that the config file lacks;
//! - [`snapshots`]: covered groups' rules kept as they were, to restore;
//! - [`health`]: a group's redundant, shadowed and exposed rules;
//! - [`api`]: the control API on a Unix socket, used by `sgctl`;
//! - [`ecs`]: a group's rules in ECS's JSON and CSV formats (export).
pub mod api;
pub mod clock;
pub mod compile;
pub mod compiled;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod drift;
pub mod drops;
pub mod ecs;
pub mod fleet;
pub mod health;
pub mod links;
pub mod linktype;
pub mod metrics;
pub mod model;
pub mod protection;
pub mod reference;
pub mod sessions;
pub mod snapshots;
pub mod store;
pub mod verify;
