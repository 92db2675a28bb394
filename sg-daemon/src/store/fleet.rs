//! The desired state of a fleet host (SPEC §8): the shared objects as
//! etcd holds them ([`SharedView`]), with this host's `[daemon]` and
//! `[[interface]]` bindings (the file's, or `state.toml`'s after API
//! changes), validated together as one document. Other hosts' published
//! bindings make the groups' members.
//!
//! - At start, the first full read of etcd, or when etcd cannot be reached
//!   the view last applied (`<state_dir>/fleet-view.json`): a restart
//!   during an outage keeps enforcing what was enforced.
//! - A view that arrives is composed with the local part; one that is not
//!   valid here (a binding names a group deleted elsewhere) is not applied
//!   and is reported, and the state in force stays (fail-static).
//! - An edit writes the shared objects it changed in one transaction on
//!   the version it was validated at; while etcd is unreachable edits are
//!   refused.

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::anyhow;
use tracing::{info, warn};

use super::{STATE_FILE, Source, Store, load_file, write_atomic_unsynced};
use crate::{
    config::{ConfigErrors, schema::Document},
    daemon::ApplyReport,
    fleet::{
        CommitError, Fleet, FleetSettings, FleetStatus, HostRecord, Layout, PublishedBinding,
        SharedView, writes,
    },
    model::{Addresses, Config},
    snapshots::Snapshots,
};

/// The view last applied, for a start while etcd is unreachable.
const CACHE_FILE: &str = "fleet-view.json";

/// How long a start waits for etcd before it falls back on the cache.
const FIRST_VIEW_WAIT: Duration = Duration::from_secs(5);

/// A fleet host's link to etcd, and the view its desired state is built
/// from.
pub(super) struct FleetLink {
    fleet: Fleet,
    settings: FleetSettings,
    layout: Layout,
    view: SharedView,
    cache: PathBuf,
    /// The host record last handed to the connection.
    published: Option<HostRecord>,
    /// Why the newest view is not in force, if it is not.
    rejected: Option<String>,
    /// That view, tried again now and then (a failed apply may pass later).
    retry: Option<SharedView>,
    /// The file's `[datastore]`, for `sgctl export` (a host file).
    datastore: Option<crate::config::schema::Datastore>,
}

impl std::fmt::Debug for FleetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLink")
            .field("settings", &self.settings)
            .field("revision", &self.view.revision)
            .finish_non_exhaustive()
    }
}

impl FleetLink {
    /// `local`'s `[daemon]` and bindings with the shared objects of the
    /// view in force, validated as one document.
    pub(super) fn compose(&self, local: &Document) -> Result<(Document, Config), ConfigErrors> {
        compose(local, &self.view, &self.settings)
    }

    pub(super) fn view(&self) -> &SharedView {
        &self.view
    }

    pub(super) fn set_view(&mut self, view: SharedView) {
        self.view = view;
    }

    /// Writes the shared objects `to` changed from `from`, if any.
    pub(super) fn write_shared(&mut self, from: &Document, to: &Document) -> Result<(), String> {
        let changes = writes(&self.layout, from, to);
        if changes.is_empty() {
            return Ok(());
        }
        let revision = self
            .fleet
            .commit(self.view.version, changes.clone())
            .map_err(|e| e.to_string())?;
        // The view follows the edit at once: the next edit is checked
        // against it (the watch brings the same revision later).
        for write in &changes {
            match write {
                crate::fleet::Write::Put { key, value } => {
                    self.view
                        .put(&self.layout, key.as_bytes(), value.as_bytes(), revision)
                }
                crate::fleet::Write::Delete { key } => {
                    self.view.delete(&self.layout, key.as_bytes())
                }
            }
        }
        self.view.version = revision;
        self.view.revision = revision;
        self.save_cache();
        Ok(())
    }

    fn save_cache(&self) {
        let cache = CacheRef {
            prefix: &self.settings.prefix,
            view: &self.view,
        };
        let text = serde_json::to_string(&cache).expect("views serialise");
        if let Err(e) = write_atomic_unsynced(&self.cache, text.as_bytes()) {
            warn!("keeping the fleet's view for a start without etcd: {e}");
        }
    }
}

/// `fleet-view.json`: the view last applied, and the prefix it is of.
#[derive(serde::Serialize)]
struct CacheRef<'a> {
    prefix: &'a str,
    view: &'a SharedView,
}

#[derive(serde::Deserialize)]
struct Cache {
    prefix: String,
    view: SharedView,
}

/// The view last applied under `prefix`; `None` when there is none (or
/// it is of another prefix: a fleet moved).
fn read_cache(path: &Path, prefix: &str) -> Option<SharedView> {
    let text = fs::read_to_string(path).ok()?;
    let cache: Cache = serde_json::from_str(&text)
        .map_err(|e| warn!("{}: {e}; not used", path.display()))
        .ok()?;
    if cache.prefix != prefix {
        warn!(
            "{} holds the view of prefix {}, not {prefix}; not used",
            path.display(),
            cache.prefix
        );
        return None;
    }
    Some(cache.view)
}

/// A fleet host's desired state: `local`'s `[daemon]` and bindings, the
/// view's shared objects, and the other hosts' instances as members.
fn compose(
    local: &Document,
    view: &SharedView,
    settings: &FleetSettings,
) -> Result<(Document, Config), ConfigErrors> {
    let mut doc = view.document();
    doc.daemon = local.daemon.clone();
    doc.interface = local.interface.clone();
    // A group deleted elsewhere (while this host was away, or at the same
    // moment as a local join) leaves the bindings that name it; the rest
    // of the shared state still applies. A binding left with no group is
    // refused below, so that its interface keeps the rules in force.
    for b in &mut doc.interface {
        let (kept, gone): (Vec<String>, Vec<String>) = (b.security_groups.iter())
            .cloned()
            .partition(|g| view.groups.contains_key(g));
        if !gone.is_empty() && !kept.is_empty() {
            warn!(
                interface = %b.name,
                "the shared state (revision {}) has no group {}: left out of this binding",
                view.revision,
                gone.join(", ")
            );
            b.security_groups = kept;
        }
    }
    let origin = format!(
        "the shared state (etcd {} at revision {}) with this host's bindings",
        settings.prefix, view.revision
    );
    let mut config = doc.validate(Path::new(&origin))?;
    doc.fill_rule_ids(&config);
    doc.canonical_addresses();
    config.datastore = Some(settings.clone());
    config.fleet_members = members(view, &settings.host_id);
    Ok((doc, config))
}

/// The instances the other hosts publish, by group.
fn members(view: &SharedView, own: &str) -> BTreeMap<String, Vec<IpAddr>> {
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let others = view.hosts.values().filter(|h| h.host_id != own);
    for binding in others.flat_map(|h| &h.bindings) {
        // Only addresses that can name one instance: a record is another
        // host's word, and 0.0.0.0, loopback, multicast or broadcast
        // would make the group mean something else.
        let unicast = (binding.addresses.iter()).filter(|a| names_an_instance(a));
        let unicast: Vec<IpAddr> = unicast.copied().collect();
        for group in &binding.security_groups {
            out.entry(group.clone()).or_default().extend(&unicast);
        }
    }
    for addrs in out.values_mut() {
        addrs.sort();
        addrs.dedup();
    }
    out
}

fn names_an_instance(a: &IpAddr) -> bool {
    let special = match a {
        IpAddr::V4(v4) => {
            v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified() || v4.is_loopback()
        }
        IpAddr::V6(v6) => {
            v6.is_multicast()
                || v6.is_unspecified()
                || v6.is_loopback()
                || v6.to_ipv4_mapped().is_some()
        }
    };
    !special && !crate::model::is_link_local(a)
}

impl Store {
    /// A fleet host's desired state at start: this host's part from the
    /// file (or `state.toml`), the shared objects from etcd's first full
    /// read, or from the view last applied when etcd cannot be reached in
    /// time (fail-static).
    pub fn open_fleet(state_dir: &Path, config_file: &Path, fleet: Fleet) -> anyhow::Result<Store> {
        let (file_doc, file_config) = load_file(config_file).map_err(|e| anyhow!("{e}"))?;
        let file_datastore = file_doc.datastore.clone();
        let settings = (file_config.datastore.clone()).ok_or_else(|| {
            anyhow!(
                "{} has no [datastore] kind = \"etcd\"",
                config_file.display()
            )
        })?;
        let state_file = state_dir.join(STATE_FILE);
        let (local, source) = match fs::read_to_string(&state_file) {
            Ok(text) => {
                let doc = Document::from_toml(&text)
                    .map_err(|e| anyhow!("{}: {e}", state_file.display()))?;
                (
                    Document {
                        daemon: file_doc.daemon.clone(),
                        interface: doc.interface,
                        ..Document::default()
                    },
                    Source::State,
                )
            }
            Err(_) => (file_doc, Source::File),
        };
        let cache = state_dir.join(CACHE_FILE);
        let view = match fleet.first_view(FIRST_VIEW_WAIT) {
            Some(view) => view,
            None => {
                let view = read_cache(&cache, &settings.prefix).ok_or_else(|| {
                    anyhow!(
                        "etcd ({}) cannot be reached, and this host has never read the shared state ({} is missing); \
                         start it once etcd answers",
                        settings.endpoints.join(", "),
                        cache.display()
                    )
                })?;
                warn!(
                    revision = view.revision,
                    "etcd cannot be reached: enforcing the shared state last applied until it answers"
                );
                view
            }
        };
        // A shared state that is not valid with this host's bindings (a
        // group it binds deleted while it was away): the view last applied
        // stays in force, said in the status, until one fits again.
        let (view, doc, config, rejected) = match compose(&local, &view, &settings) {
            Ok((doc, config)) => (view, doc, config, None),
            Err(e) => {
                let why = format!(
                    "the shared state at revision {} is not applied here (the rules in force stay): {e}",
                    view.revision
                );
                let cached = read_cache(&cache, &settings.prefix).and_then(|cached| {
                    let (doc, config) = compose(&local, &cached, &settings).ok()?;
                    Some((cached, doc, config))
                });
                let Some((cached, doc, config)) = cached else {
                    return Err(anyhow!(
                        "{e}with the shared state of etcd {} under {} at revision {}: \
                         this host's bindings name groups it does not hold (a new fleet: seed it with \
                         `sgctl datastore push FILE` on a host started without bindings)",
                        settings.endpoints.join(", "),
                        settings.prefix,
                        view.revision
                    ));
                };
                warn!("{why}");
                (cached, doc, config, Some(why))
            }
        };
        let link = FleetLink {
            fleet,
            layout: Layout::new(&settings.prefix),
            settings,
            view,
            cache,
            published: None,
            rejected,
            retry: None,
            datastore: file_datastore,
        };
        link.save_cache();
        let mut store = Store {
            state_file,
            config_file: config_file.to_owned(),
            snapshots: Snapshots::open(state_dir, config.daemon.snapshot_delay_secs),
            doc,
            config,
            source,
            fleet: Some(link),
        };
        store.record_protected();
        store.observe_snapshots();
        Ok(store)
    }

    /// Whether `doc` can be written now: on a fleet host, a change of
    /// shared objects only while etcd answers (a change of this host's
    /// bindings alone is local: its record is published on return).
    pub fn check_writable(&self, doc: &Document) -> Result<(), String> {
        let Some(link) = &self.fleet else {
            return Ok(());
        };
        let status = link.fleet.status();
        if status.connected || writes(&link.layout, &self.doc, doc).is_empty() {
            return Ok(());
        }
        Err(CommitError::Unreachable(
            (status.last_error)
                .unwrap_or_else(|| format!("no answer from {}", status.endpoints.join(", "))),
        )
        .to_string())
    }

    /// A fleet host's file as `sgctl export` gives it: `[daemon]`,
    /// `[datastore]` and its bindings (the shared objects are etcd's:
    /// `sgctl group export` saves a group).
    pub(super) fn fleet_export(&self) -> Option<Document> {
        let link = self.fleet.as_ref()?;
        Some(Document {
            daemon: self.doc.daemon.clone(),
            datastore: link.datastore.clone(),
            interface: self.doc.interface.clone(),
            ..Document::default()
        })
    }

    /// Adds what a validated document does not say to its config: the
    /// datastore and the members the fleet's other hosts publish.
    pub fn complete(&self, config: &mut Config) {
        if let Some(link) = &self.fleet {
            config.datastore = Some(link.settings.clone());
            config.fleet_members = members(&link.view, &link.settings.host_id);
        }
    }

    /// A new view from etcd: puts in force, with `apply`, the desired
    /// state it makes with this host's bindings, if that differs from the
    /// one in force (`None`: nothing to do). A view that is not valid
    /// here, or that `apply` refuses (the host's rules in force are then
    /// applied again), is reported and not taken: the state in force
    /// stays. Views older than the one in force are ignored.
    pub fn fleet_view(
        &mut self,
        view: SharedView,
        apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
    ) -> Option<Result<ApplyReport, String>> {
        let link = self.fleet.as_mut()?;
        // Older than the view in force (the watch catching up with an
        // edit of this host's): ignored, unless it is of another cluster
        // (etcd restored from a backup: its revisions start over).
        if view.revision < link.view.revision && view.cluster_id == link.view.cluster_id {
            return None;
        }
        link.retry = None;
        for (key, why) in &view.unreadable {
            warn!(key, "etcd holds a value sg cannot read: {why}; left out");
        }
        let local = Document {
            daemon: self.doc.daemon.clone(),
            interface: self.doc.interface.clone(),
            ..Document::default()
        };
        let revision = view.revision;
        let not_applied = |why: String| {
            format!(
                "the shared state at revision {revision} is not applied here (the rules in force stay): {why}"
            )
        };
        let (doc, config) = match compose(&local, &view, &link.settings) {
            Ok(composed) => composed,
            Err(e) => {
                let why = not_applied(e.to_string());
                link.rejected = Some(why.clone());
                link.retry = Some(view);
                return Some(Err(why));
            }
        };
        if doc == self.doc && config == self.config {
            // Nothing this host enforces changed (another host's record,
            // an edit it made itself): the cached view still serves.
            link.rejected = None;
            link.view = view;
            return None;
        }
        let report = match apply(&config) {
            Ok(report) => report,
            Err(e) => {
                if let Err(e) = apply(&self.config) {
                    tracing::error!("restoring the rules in force after a failed change: {e:#}");
                }
                let why = not_applied(format!("{e:#}"));
                link.rejected = Some(why.clone());
                link.retry = Some(view);
                return Some(Err(why));
            }
        };
        info!(revision, "the shared state changed");
        link.rejected = None;
        link.view = view;
        link.save_cache();
        self.doc = doc;
        self.config = config;
        self.record_protected();
        self.observe_snapshots();
        Some(Ok(report))
    }

    /// The view last refused, tried again (from the main loop now and
    /// then: an apply that failed for want of room may pass now).
    pub fn retry_fleet_view(
        &mut self,
        apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
    ) -> Option<Result<ApplyReport, String>> {
        let view = self.fleet.as_mut()?.retry.take()?;
        self.fleet_view(view, apply)
    }

    /// Hands this host's bindings, with the instance addresses they were
    /// applied with, to the connection, when they changed.
    pub fn publish_bindings(&mut self, addresses: &Addresses) {
        let Some(link) = &mut self.fleet else { return };
        let record = HostRecord {
            host_id: link.settings.host_id.clone(),
            bindings: (self.config.interfaces.iter())
                .map(|b| PublishedBinding {
                    interface: b.name.clone(),
                    security_groups: b.security_groups.clone(),
                    // Link-local addresses name no one host: no member.
                    addresses: (addresses.instance(&b.name).iter())
                        .filter(|a| !crate::model::is_link_local(a))
                        .copied()
                        .collect(),
                })
                .collect(),
        };
        if link.published.as_ref() != Some(&record) {
            link.fleet.publish(record.clone());
            link.published = Some(record);
        }
    }

    /// The hosts other than this one that bind `group`, with their
    /// interfaces (`hv-02 eth0`).
    pub fn bound_elsewhere(&self, group: &str) -> Vec<String> {
        let Some(link) = &self.fleet else {
            return Vec::new();
        };
        let others = (link.view.hosts.values()).filter(|h| h.host_id != link.settings.host_id);
        others
            .flat_map(|h| {
                (h.bindings.iter())
                    .filter(|b| b.security_groups.iter().any(|g| g == group))
                    .map(move |b| format!("{} {}", h.host_id, b.interface))
            })
            .collect()
    }

    /// The connection and the view in force (`None`: no datastore).
    pub fn fleet_status(&self) -> Option<(FleetStatus, &SharedView, Option<&str>)> {
        let link = self.fleet.as_ref()?;
        Some((link.fleet.status(), &link.view, link.rejected.as_deref()))
    }

    /// `datastore push`: the shared objects of `doc` (a config file's) into
    /// an empty prefix.
    pub fn push(&self, doc: &Document) -> Result<i64, String> {
        let link = self
            .fleet
            .as_ref()
            .ok_or("this sgd keeps everything in its file ([datastore] kind = \"file\"); nothing to push to")?;
        let changes = writes(&link.layout, &Document::default(), doc);
        link.fleet.push(changes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
