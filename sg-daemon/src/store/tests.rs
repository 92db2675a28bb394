//! The store on temporary directories: the document round trip, rule
//! ids, atomic writes, the state file against the config file, and the
//! checks at start.

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
    let edited =
        with_dirs(dir.path(), ONE).replace("[daemon]\n", "[daemon]\nblock_smtp_egress = false\n");
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
