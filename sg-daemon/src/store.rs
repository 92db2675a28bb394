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
        if let Err(e) = self.snapshots.purge(now) {
            warn!("snapshots: {e}");
        }
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
        load_file(&self.config_file)
    }

    /// The desired state as a config file, with a header saying where it
    /// came from.
    pub fn export(&self) -> Result<String, String> {
        let header = format!(
            "sg desired state (SPEC §7), exported by sgd.\n\
             Usable as its config file; [daemon] is {}'s.",
            self.config_file.display()
        );
        self.doc.to_toml(&header)
    }

    /// Makes `doc` (validated as `config`) the desired state after an API
    /// change, persisting it first. On error nothing changes.
    pub fn commit(&mut self, doc: Document, config: Config) -> io::Result<()> {
        let text = doc.to_toml(&format!(
            "Written by sgd: the desired state after changes made through its API.\n\
             It wins over the objects of {} until `sgctl reload --discard-api-changes`.\n\
             [daemon] is always taken from that file.",
            self.config_file.display()
        ));
        let text = text.map_err(io::Error::other)?;
        write_atomic(&self.state_file, text.as_bytes())?;
        self.doc = doc;
        self.config = config;
        self.source = Source::State;
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
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
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
mod tests {
    use super::*;

    /// Every field of SPEC §7, including rules without ids, 5-tuple fields,
    /// lists, group references and both binding modes.
    const FULL: &str = r#"
[daemon]
session_timeout_secs = 600
block_smtp_egress = false
state_dir = "/var/lib/sg"
runtime_dir = "/run/sg"
bpffs_dir = "/sys/fs/bpf/sg"
builtin_dhcp_client = false
region = "cn-test"

[[prefix_list]]
id = "pl-office"
name = "office"
description = "office networks"
max_entries = 10
entries = ["203.0.113.0/24", "2001:db8:1::/48"]

[[port_list]]
id = "prl-web"
max_entries = 5
entries = ["80/80", "8000/8080"]

[[security_group]]
id = "sg-web"
name = "web"
description = "web servers"
type = "basic"
inner_access_policy = "drop"
members = ["198.51.100.20", "2001:db8:9::/64"]
deletion_protection = true

  [[security_group.ingress]]
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  description = "HTTP"

  [[security_group.ingress]]
  id = "office-web"
  policy = "accept"
  priority = 5
  ip_protocol = 6
  port_range_list_id = "prl-web"
  source_prefix_list_id = "pl-office"

  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "udp"
  port_range = "53/53"
  source_port_range = "1024/65535"
  source_group_id = "sg-db"
  dest_cidr_ip = "192.0.2.10"

  [[security_group.egress]]
  policy = "drop"
  priority = 2
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"

  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "icmp"
  port_range = "-1/-1"
  dest_group_id = "sg-db"
  source_cidr_ip = "192.0.2.10/32"

[[security_group]]
id = "sg-db"

[[security_group]]
id = "sg-ent"
type = "enterprise"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "gre"
  port_range = "-1/-1"
  source_cidr_ip = "2408:180:0000::1"

[[interface]]
name = "eth0"
security_groups = ["sg-web", "sg-db"]

[[interface]]
name = "tap-vm7"
mode = "hypervisor"
addresses = ["198.51.100.7", "2001:db8:7::7"]
mac = "02:00:00:00:00:07"
security_groups = ["sg-ent"]
"#;

    fn parse(text: &str) -> Config {
        config::parse(Path::new("sg.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn config_to_document_to_toml_parses_to_the_same_config() {
        let config = parse(FULL);
        let mut doc = Document::from_toml(FULL).unwrap();
        doc.fill_rule_ids(&config);
        let text = doc.to_toml("a header\nof two lines").unwrap();
        assert!(text.starts_with("# a header\n# of two lines\n"), "{text}");
        assert_eq!(parse(&text), config, "{text}");
        // And again: the document is a fixed point.
        let again = Document::from_toml(&text).unwrap();
        assert_eq!(again, doc);
        assert_eq!(doc.validate(Path::new("x")).unwrap(), config);
    }

    #[test]
    fn filled_rule_ids_are_the_files_and_stay_when_a_rule_before_goes() {
        let config = parse(FULL);
        let mut doc = Document::from_toml(FULL).unwrap();
        doc.fill_rule_ids(&config);
        let ids: Vec<_> = doc.security_group[0]
            .ingress
            .iter()
            .map(|r| r.id.clone().unwrap())
            .collect();
        assert_eq!(ids[1], "office-web");
        assert!(ids[2].starts_with("sg-web/ingress/"), "{ids:?}");
        doc.security_group[0].ingress.remove(0);
        let after = doc.validate(Path::new("x")).unwrap();
        let after: Vec<_> = after.groups[0].ingress.iter().map(|r| &r.id).collect();
        assert_eq!(after, ids[1..].iter().collect::<Vec<_>>());
    }

    #[test]
    fn unknown_fields_are_refused_like_the_file() {
        let text = FULL.replace("port_range = \"53/53\"", "port = \"53/53\"");
        assert!(
            Document::from_toml(&text)
                .unwrap_err()
                .contains("unknown field")
        );
        let bad = FULL.replace("priority = 5", "priority = 500");
        let doc = Document::from_toml(&bad).unwrap();
        let errs = doc.validate(Path::new("api")).unwrap_err();
        assert!(errs.to_string().contains("1..=100"), "{errs}");
    }

    #[test]
    fn atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.toml");
        write_atomic(&path, b"first\n").unwrap();
        write_atomic(&path, b"second\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second\n");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["state.toml"]);
        // A failed write (the target is a directory) keeps nothing behind.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        assert!(blocked.join("x").is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    fn with_dirs(dir: &Path, objects: &str) -> String {
        format!(
            "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\n{objects}",
            dir.join("state"),
            dir.join("run")
        )
    }

    const ONE: &str = r#"
[[security_group]]
id = "sg-a"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "192.0.2.0/24"
[[interface]]
name = "sg0"
security_groups = ["sg-a"]
"#;

    #[test]
    fn the_state_file_wins_over_the_config_file_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        fs::write(&file, with_dirs(dir.path(), ONE)).unwrap();
        let state_dir = dir.path().join("state");

        let mut store = Store::open(&state_dir, &file).unwrap();
        assert_eq!(store.source(), Source::File);
        assert!(!store.state_file().exists());

        // An API change: a second rule.
        let mut doc = store.document().clone();
        let mut rule = doc.security_group[0].ingress[0].clone();
        rule.id = Some("web".into());
        rule.port_range = Some("80/80".into());
        doc.security_group[0].ingress.push(rule);
        let config = doc.validate(Path::new("api")).unwrap();
        store.commit(doc.clone(), config.clone()).unwrap();
        assert_eq!(store.source(), Source::State);

        // A restart: the state wins, with the file's [daemon] table.
        let edited = with_dirs(dir.path(), ONE)
            .replace("[daemon]\n", "[daemon]\nblock_smtp_egress = false\n");
        fs::write(&file, edited).unwrap();
        let reopened = Store::open(&state_dir, &file).unwrap();
        assert_eq!(reopened.source(), Source::State);
        assert_eq!(reopened.config().groups, config.groups);
        assert!(!reopened.config().daemon.block_smtp_egress);
        let exported = reopened.export().unwrap();
        assert_eq!(parse(&exported).groups, config.groups);

        // A reload: the file again, and the state file is gone.
        let (fdoc, fconfig) = store.read_config_file().unwrap();
        assert_eq!(fconfig.groups[0].ingress.len(), 1);
        assert!(store.reset_to_file(fdoc, fconfig).unwrap());
        assert!(!store.state_file().exists());
        assert_eq!(
            Store::open(&state_dir, &file).unwrap().source(),
            Source::File
        );
    }

    /// A restart is one more path deletion protection holds against: a
    /// file edited while sgd was stopped cannot drop a protected group by
    /// omission; turning the protection off first, then removing the
    /// group, works.
    #[test]
    fn a_restart_refuses_a_file_that_lost_a_protected_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        let state_dir = dir.path().join("state");
        let protected = ONE.replace(
            "id = \"sg-a\"\n",
            "id = \"sg-a\"\ndeletion_protection = true\n",
        );
        let keep = "[[security_group]]\nid = \"sg-keep\"\ndeletion_protection = true\n";
        let start = |objects: &str| {
            fs::write(&file, with_dirs(dir.path(), objects)).unwrap();
            Store::open(&state_dir, &file)
        };
        start(&format!("{protected}{keep}")).unwrap();
        let err = start(&protected).unwrap_err().to_string();
        assert!(err.contains("no security group sg-keep,"), "{err}");
        assert!(err.contains("deletion_protection = false"), "{err}");
        // Nor through a state file that lost it.
        fs::write(
            state_dir.join(STATE_FILE),
            with_dirs(dir.path(), &protected),
        )
        .unwrap();
        let err = start(&format!("{protected}{keep}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state.toml has no security group sg-keep,"),
            "{err}"
        );
        fs::remove_file(state_dir.join(STATE_FILE)).unwrap();
        // Protection off, applied, then the group can go.
        start(&format!("{protected}{}", keep.replace("true", "false"))).unwrap();
        let store = start(&protected).unwrap();
        assert!(store.document().group("sg-keep").is_none());
        // sg-a is still protected, and still recorded.
        let err = start(&ONE.replace("sg-a", "sg-b")).unwrap_err().to_string();
        assert!(err.contains("no security group sg-a,"), "{err}");
    }

    #[test]
    fn a_broken_state_file_is_reported_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        fs::write(&file, with_dirs(dir.path(), ONE)).unwrap();
        let state_dir = dir.path().join("state");
        fs::create_dir_all(&state_dir).unwrap();
        fs::write(state_dir.join(STATE_FILE), ONE.replace("22/22", "0/22")).unwrap();
        let err = Store::open(&state_dir, &file).unwrap_err().to_string();
        assert!(err.contains("state.toml:7:"), "{err}");
        assert!(err.contains("remove it"), "{err}");
    }
}
