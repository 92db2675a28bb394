//! The control API (SPEC §5, §6): newline-delimited JSON over a Unix stream
//! socket, `<runtime_dir>/sgd.sock`, for root only.
//!
//! One request per line, one response per line, in order, on as many
//! requests per connection as the client likes:
//!
//! ```text
//! → {"v":1,"request":{"verb":"DescribeGroups","group":"sg-web"}}
//! ← {"v":1,"response":{"ok":{"kind":"groups","data":[...]}}}
//! → {"v":1,"request":{"verb":"DeleteGroup","group":"sg-web"}}
//! ← {"v":1,"response":{"error":"group sg-web cannot be deleted: ..."}}
//! ```
//!
//! `v` is the protocol version ([`VERSION`]); a request of another version
//! is answered with an error naming the one this daemon speaks. Verbs and
//! their fields are [`Request`]'s variants; rules, groups and lists use the
//! config file's field names (SPEC §7, [`store`]).
//!
//! [`serve`] accepts connections and forwards each request, as a [`Call`],
//! to the daemon's main loop, which runs [`handle`] on it: requests are
//! executed one at a time, between the loop's other work. Every change
//! builds the whole new desired state, validates it exactly as a config
//! file (the same schema and checks: [`crate::config::validate`]), applies it
//! with [`Daemon::apply`], and only then persists it (see [`store`] for how
//! the API's state and the config file relate). On any error nothing
//! changes and the reason is returned.
//!
//! The modules: `wire` (the lines and their types), `server` and `client`
//! (the two ends of the socket), `edit` and `change` (editing the desired
//! state and putting it in force), `import` (an ECS file's rules added to
//! a group in one change), `snapshot` (snapshot policies, and a group's
//! snapshots listed, compared and restored), `datastore` (the fleet's
//! status, seeding etcd), the read-only views `effective`,
//! `diagnose`, `sessions` and `counters`, and `names` (small helpers the
//! views share); `tests` runs requests against a store.
//!
//! [`store`]: crate::store

mod change;
mod client;
mod counters;
mod datastore;
mod diagnose;
mod edit;
mod effective;
mod import;
mod names;
mod server;
mod sessions;
mod snapshot;
mod wire;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use self::{
    change::{change, health_check, reload, report_note},
    counters::counters,
    diagnose::diagnose,
    edit::edit_document,
    effective::{describe_groups, effective_rules, list_interfaces},
    sessions::{flush_sessions, sessions},
};
pub use self::{
    client::{CallError, call},
    datastore::{DatastoreInfo, FleetHost},
    server::{Call, Listener, bind, serve},
    snapshot::{SnapshotInfo, SnapshotList},
    wire::{
        Counters, Diagnosis, DirectionRules, Effective, EffectiveRule, GroupInfo, InterfaceCount,
        InterfaceInfo, MAX_REQUEST_BYTES, Probe, ReasonCount, Reply, Request, RequestLine,
        Response, ResponseLine, RuleCount, SessionInfo, VERSION, parse_request,
    },
};
use crate::{
    daemon::{ApplyReport, Daemon},
    model::Config,
    store::Store,
};

/// The JSON library of the wire format, for clients decoding it (and
/// `sgctl --output json`) into this module's types.
pub use serde_json;

/// The socket's name in `runtime_dir`.
pub const SOCKET_NAME: &str = "sgd.sock";

/// Where `sgctl` looks by default (`runtime_dir` defaults to `/run/sg`).
pub const DEFAULT_SOCKET: &str = "/run/sg/sgd.sock";

/// The control socket of a daemon whose `runtime_dir` is `runtime_dir`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

/// A rule direction, as seen from the instance: the model's.
pub use crate::model::Direction;

/// Executes one request against the desired state and the dataplane.
/// Changes are applied and persisted, or nothing changes.
pub fn handle(
    state: &mut Store,
    daemon: &mut Daemon,
    drops: &crate::drops::DropLog,
    request: Request,
) -> Response {
    let verb = request.verb();
    let result = match request {
        Request::Drops { after } => Ok(Reply::Drops(drops.since(after))),
        Request::Sessions { interface } => {
            sessions(daemon.dataplane(), state.config(), interface.as_deref())
        }
        Request::FlushSessions => flush_sessions(daemon.dataplane_mut()),
        Request::Counters => counters(daemon),
        Request::Diagnose(probe) => {
            let live = daemon.dataplane().sessions();
            let live = match &live {
                Ok(s) => Some(s.as_slice()),
                Err(e) => {
                    warn!("diagnose: cannot read the sessions: {e:#}");
                    None
                }
            };
            diagnose(state.config(), &probe, live)
        }
        other => return handle_desired(state, other, &mut |c| daemon.apply(c)),
    };
    if let Err(e) = &result {
        debug!(verb, "request failed: {e}");
    }
    into_response(result)
}

/// A fleet host refuses to delete a group other hosts bind (their
/// bindings are theirs: the edit checks cannot see them).
fn bound_elsewhere(state: &Store, request: &Request) -> Option<String> {
    let Request::DeleteGroup { group } = request else {
        return None;
    };
    let hosts = state.bound_elsewhere(group);
    (!hosts.is_empty()).then(|| {
        format!(
            "group {group} cannot be deleted: other hosts bind it: {}",
            hosts.join(", ")
        )
    })
}

fn into_response(result: Result<Reply, String>) -> Response {
    match result {
        Ok(reply) => Response::Ok(reply),
        Err(e) => Response::Error(e.trim_end().to_owned()),
    }
}

/// The requests about the desired state, with `apply` making the host
/// enforce a config ([`Daemon::apply`] in the daemon; tests pass their
/// own).
pub fn handle_desired(
    state: &mut Store,
    request: Request,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Response {
    let verb = request.verb();
    let result = match request {
        Request::DescribeGroups { group } => describe_groups(state.document(), group.as_deref()),
        Request::ListInterfaces => Ok(list_interfaces(state.document())),
        Request::ListPrefixLists => Ok(Reply::Lists(state.document().prefix_list.clone())),
        Request::ListPortLists => Ok(Reply::Lists(state.document().port_list.clone())),
        Request::EffectiveRules { interface } => {
            effective_rules(state.document(), state.config(), &interface).map(Reply::EffectiveRules)
        }
        Request::Export => state.export().map(|toml| Reply::Export { toml }),
        Request::ExportGroup { group } => match state.document().group(&group) {
            Some(g) => Ok(Reply::EcsGroup(
                crate::ecs::SecurityGroupAttribute::from_group(&state.config().daemon.region, g),
            )),
            None => Err(format!("no group {group}")),
        },
        Request::Reload {
            discard_api_changes,
        } => reload(state, discard_api_changes, apply),
        Request::HealthCheck { group, remove } => health_check(state, &group, remove, apply),
        Request::ImportGroup {
            group,
            format,
            content,
            dry_run,
        } => import::import(state, &group, &format, &content, dry_run, apply),
        Request::DatastoreStatus => Ok(datastore::status(state)),
        Request::DatastorePush { content } => datastore::push(state, &content),
        Request::ListSnapshotPolicies => Ok(Reply::SnapshotPolicies(
            state.document().snapshot_policy.clone(),
        )),
        Request::ListSnapshots { group } => snapshot::list(state, &group),
        Request::DiffSnapshot { group, snapshot } => {
            snapshot::diff_snapshot(state, &group, &snapshot)
        }
        Request::RestoreSnapshot { group, snapshot } => {
            snapshot::restore(state, &group, &snapshot, apply)
        }
        edit => match bound_elsewhere(state, &edit) {
            Some(refusal) => Err(refusal),
            None => {
                let mut doc = state.document().clone();
                match edit_document(&mut doc, edit) {
                    Err(e) => Err(e),
                    Ok((message, id)) => change(state, doc, apply).map(|report| Reply::Done {
                        message: format!("{message}{}", report_note(&report)),
                        id,
                    }),
                }
            }
        },
    };
    match &result {
        Ok(Reply::Done { message, .. }) => info!(verb, "api: {message}"),
        Ok(_) => {}
        Err(e) => info!(verb, "api request refused: {e}"),
    }
    into_response(result)
}
