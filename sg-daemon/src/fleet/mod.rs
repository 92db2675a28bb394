//! A fleet (SPEC §8): groups, rules, lists and snapshot policies shared by
//! every host through etcd, and each host's bindings published there under
//! its lease, so that a group's members are every host's bound instances.
//!
//! - `keys`: where each object lives under the prefix;
//! - `view`: what the store holds as this host last read it, and the
//!   writes an edit makes (only the objects it changed);
//! - `etcd`: the connection, on a thread of its own: a full read, then a
//!   watch from the revision read (resumed after an outage, or a full read
//!   again when that revision was compacted), the host's lease and record,
//!   and edits as transactions checked against the version they were
//!   validated at.
//!
//! The daemon's main loop gets a [`FleetEvent`] for every change and
//! applies the new desired state (only the interfaces whose tables
//! changed switch); when etcd is unreachable the last applied state stays
//! enforced and edits are refused ([`CommitError::Unreachable`]).

mod etcd;
mod keys;
mod view;

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use self::{
    etcd::Fleet,
    keys::{Key, Layout},
    view::{HostRecord, PublishedBinding, SharedView, Write, writes},
};

/// `[datastore]` with `kind = "etcd"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Every key under it (`/sg`).
    pub prefix: String,
    /// This host's name in the fleet (default: the host name).
    pub host_id: String,
    /// TLS to etcd, when `ca_file` is set.
    pub tls: Option<TlsFiles>,
    /// The host record's lease: how long a dead host's instances stay
    /// members elsewhere.
    pub lease_ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    /// A client certificate and its key, both or neither.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// What the connection tells the main loop.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// The store as now read (after the first full read, and after every
    /// watch message: always the whole view, so the latest one suffices).
    View(SharedView),
    /// Connected (again) to `endpoint`.
    Connected { endpoint: String },
    /// The connection is lost; the last view stays in force.
    Disconnected { error: String },
}

/// `sgctl datastore status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub host_id: String,
    pub connected: bool,
    /// Unix seconds of the last connect or disconnect.
    pub since: u64,
    /// The revision of the view in force.
    pub revision: i64,
    /// The store's revision as last heard (any answer's header).
    pub store_revision: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Why an edit was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Another edit came first: the store's version is not the one the
    /// edit was validated against.
    #[error(
        "conflict: the shared state changed (revision {current}) since this edit was checked against revision {base}; nothing was written; look again and retry"
    )]
    Conflict { base: i64, current: i64 },
    /// etcd cannot be reached: nothing was written.
    #[error(
        "the datastore is unreachable ({0}); edits are refused until it is back (one cut off mid-way may still land: look again then), and the rules in force stay enforced"
    )]
    Unreachable(String),
    /// `datastore push` into a prefix that holds objects already.
    #[error("the prefix is not empty: {0}")]
    NotEmpty(String),
}

/// A host's addresses of its bound instances, for its record.
pub fn record(host_id: &str, bindings: &[(String, Vec<String>, Vec<IpAddr>)]) -> HostRecord {
    HostRecord {
        host_id: host_id.to_owned(),
        bindings: bindings
            .iter()
            .map(|(interface, groups, addresses)| PublishedBinding {
                interface: interface.clone(),
                security_groups: groups.clone(),
                addresses: addresses.clone(),
            })
            .collect(),
    }
}
