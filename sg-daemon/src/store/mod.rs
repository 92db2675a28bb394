//! The desired state as a document in the config file's format (SPEC §7),
//! and where the control API keeps it: `<state_dir>/state.toml`.
//!
//! # The config file and the API
//!
//! - At start, the desired state is `state.toml` if it exists, else the
//!   config file. `state.toml` exists once the API has changed something
//!   since the file was last (re)loaded: from then on it wins over the
//!   config file's objects (prefix lists, port lists, groups, interfaces),
//!   also across restarts, so changes made through the API persist (SPEC
//!   §6). The `[daemon]` table always comes from the config file: it says
//!   where `state.toml` is, and host settings are not the API's to change.
//! - Every API change writes the whole desired state to `state.toml`,
//!   atomically (a temporary file in the same directory, fsync, rename,
//!   fsync of the directory): after a crash it holds the old state or the
//!   new one.
//! - A reload (`sgctl reload`, SIGHUP) makes the config file the desired
//!   state again and removes `state.toml`, but it is refused (nothing
//!   changes) when `state.toml` holds objects that differ from the file's,
//!   naming them ([`crate::drift`]): keep them with `sgctl export >
//!   /etc/sg/sg.toml`, or discard them with `sgctl reload
//!   --discard-api-changes`. A reload never deletes a group under deletion
//!   protection (see `api::change::reload`), and neither does a restart
//!   from a file edited meanwhile ([`crate::protection`]).
//!
//! The document is the config file's schema ([`config::schema`]), so
//! `state.toml` and `sgctl export` are valid config files, and every change
//! is validated by the file's checks ([`config::validate`]): limits and
//! messages are the file's. Rule ids absent from the file are filled in
//! with the ids the file gave them (`<group>/<direction>/<n>`) when it is
//! loaded, so they stay stable while rules are added and removed.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use tracing::{info, warn};

/// The document types are the config file's schema.
pub use crate::config::schema::{Binding, Document, Group, List, ProtocolValue, Rule};
use crate::{
    config,
    model::Config,
    protection,
    snapshots::{Snapshots, unix_now},
};

mod fleet;

/// The name of the persisted desired state in `state_dir`.
pub const STATE_FILE: &str = "state.toml";

/// Where the desired state in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The config file (no API change since it was loaded).
    File,
    /// `state.toml`: changes made through the API.
    State,
}

/// The desired state in force, and where it is kept.
#[derive(Debug)]
pub struct Store {
    state_file: PathBuf,
    config_file: PathBuf,
    doc: Document,
    config: Config,
    source: Source,
    /// The snapshots of covered groups; every change is shown to them.
    snapshots: Snapshots,
    /// A fleet host's link to etcd (`[datastore] kind = "etcd"`); `None`:
    /// the file holds everything.
    fleet: Option<fleet::FleetLink>,
}

/// A config file read, validated and with its rule ids filled in.
fn load_file(path: &Path) -> Result<(Document, Config), String> {
    let (mut doc, config) = config::load_document(path).map_err(|e| e.to_string())?;
    doc.fill_rule_ids(&config);
    Ok((doc, config))
}

impl Store {
    /// The desired state at start: `<state_dir>/state.toml` when it exists
    /// (API changes, which win over the config file's objects; the
    /// `[daemon]` table is the config file's), else `config_file`. Fails
    /// when either is invalid, saying where.
    pub fn open(state_dir: &Path, config_file: &Path) -> anyhow::Result<Store> {
        let (file_doc, file_config) = load_file(config_file).map_err(|e| anyhow!("{e}"))?;
        let state_file = state_dir.join(STATE_FILE);
        let snapshots = Snapshots::open(state_dir, file_config.daemon.snapshot_delay_secs);
        let text = match fs::read_to_string(&state_file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Store {
                    state_file,
                    config_file: config_file.to_owned(),
                    doc: file_doc,
                    config: file_config,
                    source: Source::File,
                    snapshots,
                    fleet: None,
                }
                .protected_at_start();
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", state_file.display())),
        };
        // Its own positions first, for messages that point into it.
        let (mut doc, _) = config::parse_document(&state_file, &text).map_err(|e| {
            anyhow!(
                "{e}(fix {0} or remove it to start from {1})",
                state_file.display(),
                config_file.display()
            )
        })?;
        doc.daemon = file_doc.daemon.clone();
        let config = doc
            .validate(&state_file)
            .map_err(|e| anyhow!("{e}with the [daemon] table of {}", config_file.display()))?;
        doc.fill_rule_ids(&config);
        let differences = crate::drift::differences(&doc, &file_doc);
        if differences.is_empty() {
            info!(state = %state_file.display(), "desired state from the API's state file (same objects as the config file)");
        } else {
            warn!(
                state = %state_file.display(),
                config = %config_file.display(),
                "changes made through the API are in force, not the config file's objects \
                 (edits to the file's versions of these are not): {}; \
                 keep them with `sgctl export > {}`, or discard them with \
                 `sgctl reload --discard-api-changes`",
                differences.join("; "),
                config_file.display()
            );
        }
        Store {
            state_file,
            config_file: config_file.to_owned(),
            doc,
            config,
            source: Source::State,
            snapshots,
            fleet: None,
        }
        .protected_at_start()
    }

    /// Refuses to start from a desired state that lacks a group under
    /// deletion protection in the state last in force (see
    /// [`crate::protection`]); records those of this one.
    fn protected_at_start(self) -> anyhow::Result<Store> {
        let source = match self.source {
            Source::File => &self.config_file,
            Source::State => &self.state_file,
        };
        protection::check_at_start(self.state_dir(), &self.doc, source)
            .map_err(|e| anyhow!("{e}"))?;
        let mut store = self;
        store.record_protected();
        store.observe_snapshots();
        Ok(store)
    }

    /// Shows the desired state in force to the snapshots (see
    /// [`crate::snapshots`]); a failure to write one is logged: the change
    /// itself stands.
    fn observe_snapshots(&mut self) {
        if let Err(e) = self.snapshots.observe(&self.config, &self.doc, unix_now()) {
            warn!("snapshots: {e}");
        }
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Takes the snapshots due by now, and deletes those past their
    /// retention; failures are logged.
    pub fn snapshot_tick(&mut self) {
        let now = unix_now();
        if let Err(e) = self.snapshots.take_due(now) {
            warn!("snapshots: {e}");
        }
        if let Err(e) = self.snapshots.purge_now_and_then(now) {
            warn!("snapshots: {e}");
        }
    }

    /// Takes `group`'s scheduled snapshot now (before a restore).
    pub fn snapshot_now(&mut self, group: &str) -> Result<(), String> {
        (self.snapshots.take_now(group, unix_now()))
            .map(drop)
            .map_err(|e| format!("the snapshot due for group {group} cannot be taken first: {e}"))
    }

    fn state_dir(&self) -> &Path {
        self.state_file.parent().unwrap_or(Path::new("."))
    }

    /// Keeps the record of the protected groups in force; a failure only
    /// weakens the check at the next start, so it is logged, not fatal.
    fn record_protected(&self) {
        if let Err(e) = protection::record(self.state_dir(), &self.doc) {
            warn!(
                "recording the groups under deletion protection in {}: {e}",
                self.state_dir().display()
            );
        }
    }

    /// The validated desired state, as enforced.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The desired state as a document (SPEC §7).
    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// Reads and validates the config file (for a reload); nothing
    /// changes.
    pub fn read_config_file(&self) -> Result<(Document, Config), String> {
        let (file_doc, file_config) = load_file(&self.config_file)?;
        // Where the shared objects live is read at start only: a reload
        // of a file that moved them would enforce bindings without their
        // groups.
        let running = self.config.datastore.as_ref();
        if file_config.datastore.as_ref() != running {
            return Err(format!(
                "reload refused: [datastore] in {} differs from the one in force ({}); \
                 restart sgd to change where the shared objects live",
                self.config_file.display(),
                running.map_or("the file".to_owned(), |d| format!(
                    "etcd {} under {} as {}",
                    d.endpoints.join(", "),
                    d.prefix,
                    d.host_id
                ))
            ));
        }
        match &self.fleet {
            None => Ok((file_doc, file_config)),
            // A fleet host's file holds its bindings: with the shared
            // objects in force.
            Some(link) => link.compose(&file_doc).map_err(|e| e.to_string()),
        }
    }

    /// The desired state as a config file, with a header saying where it
    /// came from.
    pub fn export(&self) -> Result<String, String> {
        if let Some(host) = self.fleet_export() {
            let header = format!(
                "sg: this fleet host's file (SPEC §8), exported by sgd.\n\
                 Groups, lists and snapshot policies are etcd's (sgctl group export saves one).\n\
                 Usable as {}.",
                self.config_file.display()
            );
            return host.to_toml(&header);
        }
        let header = format!(
            "sg desired state (SPEC §7), exported by sgd.\n\
             Usable as its config file; [daemon] is {}'s.",
            self.config_file.display()
        );
        self.doc.to_toml(&header)
    }

    /// Makes `doc` (validated as `config`) the desired state after an API
    /// change, persisting it first: `state.toml`, and on a fleet host the
    /// shared objects it changed, in one etcd transaction checked against
    /// the revision they were validated at. On error nothing changes and
    /// the message says why.
    pub fn commit(&mut self, doc: Document, config: Config) -> Result<(), String> {
        // The view as it was, in case the local part cannot be written
        // after etcd took the shared one: the next edit must then be
        // checked against the old version (a conflict, until the watch
        // brings this edit), not against a view the state in force lacks.
        let view_before = self.fleet.as_ref().map(|link| link.view().clone());
        if let Some(link) = &mut self.fleet {
            link.write_shared(&self.doc, &doc)?;
        }
        let local = match self.fleet {
            // A fleet host keeps only its bindings locally.
            Some(_) => Document {
                interface: doc.interface.clone(),
                ..Document::default()
            },
            None => doc.clone(),
        };
        let unchanged_locally = self.fleet.is_some() && self.doc.interface == doc.interface;
        if !unchanged_locally {
            let text = local.to_toml(&format!(
                "Written by sgd: the desired state after changes made through its API.\n\
                 It wins over the objects of {} until `sgctl reload --discard-api-changes`.\n\
                 [daemon] is always taken from that file.",
                self.config_file.display()
            ));
            let written = text
                .map_err(io::Error::other)
                .and_then(|text| write_atomic(&self.state_file, text.as_bytes()));
            if let Err(e) = written {
                if let (Some(link), Some(view)) = (&mut self.fleet, view_before) {
                    link.set_view(view);
                }
                return Err(format!("the state cannot be persisted: {e}"));
            }
            self.source = Source::State;
        }
        self.doc = doc;
        self.config = config;
        self.record_protected();
        self.observe_snapshots();
        Ok(())
    }

    /// Makes the config file's `doc` the desired state again (a reload):
    /// `state.toml` is removed. Returns whether it existed, i.e. whether
    /// API changes were discarded. On error nothing changes.
    pub fn reset_to_file(&mut self, doc: Document, config: Config) -> io::Result<bool> {
        let existed = remove_durably(&self.state_file)?;
        self.doc = doc;
        self.config = config;
        self.source = Source::File;
        self.snapshots
            .set_delay(self.config.daemon.snapshot_delay_secs);
        self.record_protected();
        self.observe_snapshots();
        Ok(existed)
    }
}

/// Replaces `path` with `data` so that a crash leaves the old contents or
/// the new, never a mix: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. Creates the directory (mode
/// 0700) if needed; the file is mode 0600.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_file(path, data, true)
}

/// [`write_atomic`] without the fsyncs: a crash leaves the old contents
/// or the new (rename is atomic), but a power loss may leave the old. For
/// caches rewritten often (a fleet host's view: fsyncing it on every
/// watch event queued a hundred hosts' writes on one disk).
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_file(path, data, false)
}

fn replace_file(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        match durable {
            true => File::open(dir)?.sync_all(),
            false => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Removes `path` and fsyncs its directory; `Ok(false)` if it was not
/// there.
pub(crate) fn remove_durably(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("removing {}: {e}", path.display()),
            ));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
