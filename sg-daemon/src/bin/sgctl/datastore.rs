//! `sgctl datastore status` and `sgctl datastore push FILE` (SPEC §8):
//! their subcommands, requests and tables.

use std::path::PathBuf;

use clap::Subcommand;
use sg_daemon::api::{DatastoreInfo, Request};

use super::render::{View, or_dash, table};

#[derive(Subcommand)]
pub(crate) enum DatastoreCmd {
    /// Where the shared objects live; with etcd: the endpoints, whether
    /// they answer, the revision in force, how far behind it is, and the
    /// hosts seen with their instances.
    #[command(after_help = "Example: sgctl datastore status --output json")]
    Status,
    /// First-time setup of a fleet: load the groups, prefix lists, port
    /// lists and snapshot policies of a config file into the empty etcd
    /// prefix (refused when it holds any). The file is validated as a
    /// config file; its bindings are not pushed (each host binds its own).
    #[command(after_help = "Example: sgctl datastore push /etc/sg/fleet-groups.toml")]
    Push {
        /// A config file (SPEC §7) holding the shared objects.
        file: PathBuf,
    },
}

pub(crate) fn request(cmd: DatastoreCmd) -> (Request, View) {
    match cmd {
        DatastoreCmd::Status => (Request::DatastoreStatus, View::Plain),
        // The file is read by `main` and sent as text.
        DatastoreCmd::Push { .. } => (
            Request::DatastorePush {
                content: String::new(),
            },
            View::Message,
        ),
    }
}

pub(crate) fn status(d: &DatastoreInfo) -> String {
    let Some(c) = &d.connection else {
        return "datastore: file (this host's config file holds everything)\n".into();
    };
    let since = sg_daemon::snapshots::rfc3339(c.since);
    let mut out = format!(
        "datastore: etcd {} prefix {}\nhost_id: {}\nconnection: {}\nrevision in force: {} (store at {}, {} behind)\n",
        c.endpoints.join(", "),
        c.prefix,
        c.host_id,
        if c.connected {
            format!("connected since {since}")
        } else {
            format!(
                "UNREACHABLE since {since}: the rules in force stay enforced; edits are refused ({})",
                c.last_error.as_deref().unwrap_or("no answer")
            )
        },
        d.applied_revision,
        c.store_revision,
        d.lag
    );
    if let Some(why) = &d.rejected {
        out.push_str(&format!("not applied: {why}\n"));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = (d.hosts.iter())
        .map(|h| {
            vec![
                format!(
                    "{}{}",
                    h.host_id,
                    if h.this_host { " (this host)" } else { "" }
                ),
                or_dash(Some(&h.interfaces.join(", "))),
                or_dash(Some(&h.instances.join(", "))),
            ]
        })
        .collect();
    out.push_str(&table(&["HOST", "INTERFACES", "INSTANCES"], &rows));
    out
}
