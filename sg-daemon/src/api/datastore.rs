//! `DatastoreStatus` and `DatastorePush` (SPEC §8): where the shared
//! objects live, the connection to etcd and the hosts seen; seeding an
//! empty prefix from a config file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Reply;
use crate::{config, store::Store};

pub(super) fn status(state: &Store) -> Reply {
    let Some((connection, view, rejected)) = state.fleet_status() else {
        return Reply::Datastore(Box::new(DatastoreInfo {
            kind: "file".into(),
            connection: None,
            applied_revision: 0,
            lag: 0,
            rejected: None,
            hosts: Vec::new(),
        }));
    };
    let hosts = (view.hosts.values())
        .map(|h| FleetHost {
            host_id: h.host_id.clone(),
            this_host: h.host_id == connection.host_id,
            interfaces: h.bindings.iter().map(|b| b.interface.clone()).collect(),
            instances: (h.bindings.iter())
                .flat_map(|b| b.addresses.iter().map(ToString::to_string))
                .collect(),
        })
        .collect();
    Reply::Datastore(Box::new(DatastoreInfo {
        kind: "etcd".into(),
        applied_revision: view.revision,
        lag: (connection.store_revision - view.revision).max(0),
        rejected: rejected.map(str::to_owned),
        hosts,
        connection: Some(connection),
    }))
}

/// The groups, lists and snapshot policies of `content` (a config file,
/// validated as one; its `[daemon]`, `[datastore]` and bindings are not
/// pushed) written into the empty prefix in one transaction.
pub(super) fn push(state: &Store, content: &str) -> Result<Reply, String> {
    let origin = Path::new("the pushed file");
    let (mut doc, parsed) = config::parse_document(origin, content).map_err(|e| e.to_string())?;
    if parsed.datastore.is_some() {
        return Err(
            "the pushed file has [datastore] kind = \"etcd\": push a file that holds the groups and lists"
                .into(),
        );
    }
    doc.fill_rule_ids(&parsed);
    let revision = state.push(&doc)?;
    Ok(Reply::Done {
        message: format!(
            "pushed {} group(s), {} prefix list(s), {} port list(s), {} snapshot policy(ies) at revision {revision}{}",
            doc.security_group.len(),
            doc.prefix_list.len(),
            doc.port_list.len(),
            doc.snapshot_policy.len(),
            if doc.interface.is_empty() {
                String::new()
            } else {
                format!(
                    "; its {} [[interface]] binding(s) are not shared (each host binds its own)",
                    doc.interface.len()
                )
            }
        ),
        id: None,
    })
}

/// `sgctl datastore status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatastoreInfo {
    /// `file` or `etcd`.
    pub kind: String,
    /// The connection (etcd only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<crate::fleet::FleetStatus>,
    /// The revision of the shared state in force.
    pub applied_revision: i64,
    /// Revisions the store is ahead of the state in force.
    pub lag: i64,
    /// Why the newest shared state is not in force, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    pub hosts: Vec<FleetHost>,
}

/// A host of the fleet, as it publishes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetHost {
    pub host_id: String,
    pub this_host: bool,
    pub interfaces: Vec<String>,
    pub instances: Vec<String>,
}
