//! The control API through `sgctl`, against a running `sgd` in the server's
//! namespace (SPEC §5, §6): the verbs, in tables and JSON; a rule added
//! through the API opens a port for real traffic and persists across a
//! restart; a bad request changes nothing; the socket serves root only.
//!
//! `sgctl` is found by [`sg_tests::sgctl_path`]: `$SGCTL_BIN`, else next to
//! `sgd`, else in the workspace's `target/debug`.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        net::UnixStream,
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use sg_daemon::api::{self, Counters, Diagnosis, Effective, GroupInfo, SessionInfo, serde_json};
use sg_tests::*;

/// The id `sgd` gives [`web`]'s rule (derived from its content).
const WEB_HTTP: &str = "sg-web/ingress/a9921e34";

/// HTTP open to everyone (IPv4), on the server's interface.
fn web() -> Group {
    Group::new("sg-web")
        .name("web")
        .rules([accept_in("tcp", "80/80", "0.0.0.0/0")])
}

/// `sgctl --output json ARGS`, parsed; see [`json!`] to decode it.
fn json_value(ctl: &Ctl, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let text = ctl.ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sgctl {args:?}: {e}:\n{text}"))
}

/// `sgctl --output json ARGS`, decoded into the type the binding names.
macro_rules! json {
    ($ctl:expr, $args:expr) => {{
        let value = json_value(&$ctl, $args);
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value:#}"))
    }};
}

/// The arguments of `sgctl rule add` for an SSH rule in sg-web, with `more`
/// options (the remote side, a priority).
fn add_ssh<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "rule",
        "add",
        "sg-web",
        "ingress",
        "--policy",
        "accept",
        "--ip-protocol",
        "tcp",
        "--port-range",
        "22/22",
    ];
    args.extend_from_slice(more);
    args
}

/// The arguments of `sgctl diagnose sg0` for a TCP packet going `direction`
/// from `src` (port `src_port`, if given) to `dst` port `dst_port`.
fn diagnose_tcp<'a>(
    direction: &'a str,
    src: &'a str,
    dst: &'a str,
    src_port: Option<&'a str>,
    dst_port: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "diagnose",
        "sg0",
        "--direction",
        direction,
        "--protocol",
        "tcp",
        "--src",
        src,
        "--dst",
        dst,
    ];
    if let Some(port) = src_port {
        args.extend(["--src-port", port]);
    }
    args.extend(["--dst-port", dst_port]);
    args
}

#[test]
fn the_verbs_against_a_running_daemon() {
    let t = Topology::pair("api").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let sgd = enforce(s, &[web()]);
    let ctl = sgd.ctl();
    assert_eq!(ctl.socket(), api::socket_path(&sgd.dirs().runtime_dir()));
    let client = c.ipv4().to_string();
    let server = s.ipv4().to_string();

    // Groups, as a table and as JSON.
    let table = ctl.ok(&["group", "list"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("sg-web") && table.contains("sg0"), "{table}");
    let groups: Vec<GroupInfo> = json!(ctl, &["group", "list"]);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].interfaces, ["sg0"]);
    assert_eq!(groups[0].group.ingress[0].id.as_deref(), Some(WEB_HTTP));

    // A new group with an SSH rule for the client, joined to the interface.
    let ssh_in = |expect| probe("ssh", Tcp(22), c, s.ipv4(), expect);
    check(&[ssh_in(DROPPED)]);
    ctl.ok(&["group", "create", "sg-admin", "--description", "admins"]);
    let added = ctl.ok(&[
        "rule",
        "add",
        "sg-admin",
        "ingress",
        "--id",
        "ssh",
        "--policy",
        "accept",
        "--ip-protocol",
        "tcp",
        "--port-range",
        "22/22",
        "--source-cidr-ip",
        &client,
    ]);
    assert!(added.contains("ssh"), "{added}");
    ctl.ok(&["interface", "join", "sg0", "sg-admin"]);
    check(&[ssh_in(PASS)]);
    let detail = ctl.ok(&["group", "show", "sg-admin"]);
    assert!(
        detail.contains("interfaces") && detail.contains("sg0"),
        "{detail}"
    );
    assert!(detail.contains("22/22"), "{detail}");

    // The effective rules: merged, ordered, each with its group.
    let effective: Effective = json!(ctl, &["interface", "rules", "sg0"]);
    assert_eq!(effective.security_groups, ["sg-web", "sg-admin"]);
    let ingress: Vec<_> = effective
        .ingress
        .rules
        .iter()
        .map(|r| (r.group.as_deref(), r.id.as_str()))
        .collect();
    assert_eq!(
        ingress,
        [
            (Some("sg-web"), WEB_HTTP),
            (Some("sg-admin"), "ssh"),
            (None, "(intra-group)"),
        ]
    );
    assert_eq!(effective.ingress.default_policy, "drop");
    // The interface's own link-local address is no member (it is not unique
    // across links): the intra-group rule names its other addresses only.
    let intra = &effective.ingress.rules[2].remote_addresses;
    assert!(!intra.is_empty(), "{effective:?}");
    assert!(!intra.iter().any(|a| a.starts_with("fe80")), "{intra:?}");
    assert!(ctl.ok(&["interface", "rules", "sg0"]).contains("ssh"));

    // Diagnose: the deciding rule, or the default.
    let diagnose = |port: &str| -> Diagnosis {
        json!(
            ctl,
            &diagnose_tcp("ingress", &client, &server, Some("40000"), port)
        )
    };
    let ssh = diagnose("22");
    assert_eq!(
        (
            ssh.verdict.as_str(),
            ssh.group.as_deref(),
            ssh.rule.as_deref()
        ),
        ("accept", Some("sg-admin"), Some("ssh"))
    );
    let telnet = diagnose("23");
    assert_eq!(
        (telnet.verdict.as_str(), telnet.decided_by.as_str()),
        ("drop", "default")
    );
    let text = ctl.ok(&diagnose_tcp("egress", &server, &client, None, "25"));
    assert!(text.starts_with("drop (builtin)"), "{text}");
    // A TCP packet has a destination port: without one, a usage error.
    let mut no_port = diagnose_tcp("ingress", &client, &server, None, "22");
    no_port.truncate(no_port.len() - 2);
    let usage = ctl.run(&no_port);
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(usage.stderr.contains("--dst-port"), "{usage:?}");

    // Sessions and counters.
    let mut conn = TcpConn::open(c, None, s.v4(80), Duration::from_secs(2)).unwrap();
    conn.echo(b"ping").unwrap();
    let sessions: Vec<SessionInfo> = json!(ctl, &["sessions", "--interface", "sg0"]);
    let port = conn.local_addr().port();
    let web = sessions
        .iter()
        .find(|x| x.local_port == 80 && x.remote_port == port)
        .unwrap_or_else(|| panic!("no session of {port} -> 80 in {sessions:?}"));
    assert_eq!(
        (
            web.opened.as_str(),
            web.protocol.as_str(),
            web.state.as_str()
        ),
        ("inbound", "tcp", "established")
    );
    assert!(web.expires_in_secs > 900 && web.answered, "{web:?}");
    let port = port.to_string();
    let session_diag: Diagnosis = json!(
        ctl,
        &diagnose_tcp("egress", &server, &client, Some("80"), &port)
    );
    assert_eq!(session_diag.decided_by, "session", "{session_diag:?}");
    let counters: Counters = json!(ctl, &["counters"]);
    let accepted = counters
        .reasons
        .iter()
        .find(|c| c.reason == "rule-accept")
        .unwrap();
    assert!(accepted.packets > 0, "{counters:?}");
    let http = counters
        .rules
        .iter()
        .find(|r| r.rule == WEB_HTTP && r.interface == "sg0")
        .unwrap_or_else(|| panic!("no count of the HTTP rule: {counters:?}"));
    assert!(http.packets > 0 && http.bytes > 0, "{http:?}");
    assert!(
        counters.interfaces.iter().any(|i| i.interface == "sg0"
            && i.direction == "inbound"
            && i.verdict == "drop"
            && i.packets > 0),
        "{counters:?}"
    );
    assert!(ctl.ok(&["counters"]).contains("default-drop"));
    let flushed = ctl.ok(&["sessions", "--flush"]);
    assert!(flushed.contains("flushed"), "{flushed}");

    // Lists.
    ctl.ok(&[
        "prefix-list",
        "set",
        "pl-admins",
        "--max-entries",
        "4",
        "--entry",
        "198.51.100.0/24",
    ]);
    let lists: Vec<sg_daemon::config::schema::List> = json!(ctl, &["prefix-list", "list"]);
    assert_eq!(lists[0].entries, ["198.51.100.0/24"]);
    ctl.ok(&["prefix-list", "delete", "pl-admins"]);

    // Export is a valid config file of the state in force.
    let exported = ctl.ok(&["export"]);
    let config = sg_daemon::config::parse(Path::new("export"), &exported)
        .unwrap_or_else(|e| panic!("{e}\n{exported}"));
    assert_eq!(config.interfaces[0].security_groups, ["sg-web", "sg-admin"]);
    assert_eq!(config.group("sg-admin").unwrap().ingress[0].id, "ssh");

    // Refusals (1), usage (2), no daemon (3).
    let e = ctl.refused(&["group", "delete", "sg-admin", "--yes"]);
    assert!(e.contains("bound to interface sg0"), "{e}");
    assert_eq!(ctl.run(&["rule", "add", "sg-admin"]).code, 2);
    let gone = Ctl::new(sgd.dirs().runtime_dir().join("nothing.sock"));
    assert_eq!(gone.run(&["group", "list"]).code, 3);

    // Leaving the group closes the port again for new connections.
    ctl.ok(&["interface", "leave", "sg0", "sg-admin"]);
    check(&[ssh_in(DROPPED)]);
    // Deleting asks first; from a script (no terminal) --yes is required.
    let asked = ctl.run(&["group", "delete", "sg-admin"]);
    assert_eq!(asked.code, 2, "{asked:?}");
    assert!(asked.stderr.contains("--yes"), "{asked:?}");
    assert!(ctl.ok(&["group", "list"]).contains("sg-admin"));
    ctl.ok(&["group", "delete", "sg-admin", "--yes"]);
    assert!(!ctl.ok(&["group", "list"]).contains("sg-admin"));
}

#[test]
fn an_api_rule_opens_a_port_and_persists_across_a_restart() {
    let t = Topology::pair("apip").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let config = groups_on(SERVER_IF, &[web()]);
    let mut sgd = Daemon::start(s, &config).unwrap();
    let ctl = sgd.ctl();
    let state = sgd.dirs().state_dir().join(sg_daemon::store::STATE_FILE);
    assert!(!state.exists());
    let ssh = |expect| probe("ssh", Tcp(22), c, s.ipv4(), expect);
    let http = |expect| probe("http", Tcp(80), c, s.ipv4(), expect);

    check(&[ssh(DROPPED)]);
    let id = ctl.ok(&add_ssh(&["--source-cidr-ip", "0.0.0.0/0"]));
    assert!(id.contains("sg-web/ingress/bdceab40"), "{id}");
    check(&[ssh(PASS), http(PASS)]);
    assert!(state.exists());

    // A restart on the same (unchanged) config file: the API's rule is
    // still in force, because the new daemon applies the persisted state
    // (the file alone would close port 22).
    sgd.restart(s, &config).unwrap();
    check(&[ssh(PASS), http(PASS)]);
    let groups: Vec<GroupInfo> = json!(ctl, &["group", "show", "sg-web"]);
    assert_eq!(groups[0].group.ingress.len(), 2);
    assert!(
        sgd.log()
            .contains("changes made through the API are in force"),
        "{}",
        sgd.log()
    );
    // ... naming what differs from the file (issue #9 item 5).
    assert!(
        sgd.log()
            .contains("security group sg-web changed through the API"),
        "{}",
        sgd.log()
    );

    // A reload would discard the API's rule: refused, saying what and how
    // to keep it (issue #9 item 5); asked to discard, it does.
    let refused = ctl.refused(&["reload"]);
    assert!(
        refused.contains("security group sg-web changed"),
        "{refused}"
    );
    assert!(refused.contains("sgctl export >"), "{refused}");
    assert!(state.exists());
    check(&[ssh(PASS), http(PASS)]);
    let reloaded = ctl.ok(&["reload", "--discard-api-changes"]);
    assert!(reloaded.contains("discarded"), "{reloaded}");
    assert!(!state.exists());
    check(&[ssh(DROPPED), http(PASS)]);
}

#[test]
fn a_bad_request_changes_nothing() {
    let t = Topology::pair("apib").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let sgd = enforce(s, &[web()]);
    let ctl = sgd.ctl();
    let before = ctl.ok(&["export"]);

    // Each request, and what the refusal must say.
    #[rustfmt::skip]
    let refused: [(Vec<&str>, &[&str]); 13] = [
        (add_ssh(&["--priority", "0", "--source-cidr-ip", "0.0.0.0/0"]), &["priority", "1..=100"]),
        (
            add_ssh(&["--source-cidr-ip", "0.0.0.0/0", "--source-group-id", "sg-web"]),
            &["exactly one of"],
        ),
        (add_ssh(&["--source-group-id", "sg-nope"]), &["sg-nope"]),
        (vec!["rule", "remove", "sg-web", "nope"], &["no rule nope"]),
        (vec!["interface", "join", "sg0", "sg-nope"], &["no group sg-nope"]),
        (vec!["group", "delete", "sg-web", "--yes"], &["bound to interface sg0"]),
        (
            vec!["rule", "modify", "sg-web", WEB_HTTP, "--port-range", "0/80"],
            &["group sg-web ingress rule sg-web/ingress/a9921e34: port_range"],
        ),
        (vec!["group", "create", "sg-web"], &["exists"]),
        (vec!["rule", "modify", "sg-web", WEB_HTTP], &["nothing to modify"]),
        // Text that would fake a row, and an address that would not mean
        // what it says: refused as the file refuses them.
        (vec!["group", "create", "sg-x", "--description", "x\nsg-fake"], &["description", "no control characters"]),
        (vec!["group", "create", "sg-x/../y"], &["not an id", "starting with \"sg-\""]),
        (add_ssh(&["--source-cidr-ip", "198.51.100.7/24"]), &["source_cidr_ip", "host bits set (the network is \"198.51.100.0/24\")"]),
        (add_ssh(&["--source-cidr-ip", "0.0.0.0/0", "--dest-cidr-ip", "2001:db8::1"]), &["dest_cidr_ip", "is IPv6 but the remote side 0.0.0.0/0 is IPv4"]),
    ];
    for (args, says) in &refused {
        let e = ctl.refused(args);
        assert!(
            says.iter().all(|part| e.contains(part)),
            "sgctl {args:?}: {e}"
        );
    }

    // The wire protocol itself: a wrong version and a broken line are
    // answered, not fatal.
    let mut stream = UnixStream::connect(ctl.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for (line, expect) in [
        (r#"{"v":2,"request":{"verb":"Export"}}"#, "speaks version 1"),
        ("not json", "not a JSON request line"),
        (
            r#"{"v":1,"request":{"verb":"Obliterate"}}"#,
            "unknown variant",
        ),
    ] {
        writeln!(stream, "{line}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        assert!(answer.contains(expect), "{line} -> {answer}");
    }

    let after = ctl.ok(&["export"]);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&after), strip(&before));
    #[rustfmt::skip]
    check(&[
        probe("http", Tcp(80), c, s.ipv4(), PASS),
        probe("ssh",  Tcp(22), c, s.ipv4(), DROPPED),
    ]);
}

/// A directory everyone may enter, holding a copy of `sgctl` everyone may
/// run (the build tree may not be reachable for an unprivileged user).
fn public_sgctl() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix("sgctl-").tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("sgctl");
    fs::copy(sgctl_path(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

#[test]
fn the_socket_serves_root_only() {
    let t = Topology::pair("apir").unwrap();
    let sgd = enforce(t.server(), &[web()]);
    let dirs = sgd.dirs();
    let ctl = sgd.ctl();
    let meta = fs::metadata(ctl.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    // Let anyone reach the socket's directory, so that only the socket's
    // own mode and the daemon's peer check stand in the way.
    for dir in [
        dirs.runtime_dir(),
        dirs.runtime_dir().parent().unwrap().to_owned(),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (_keep, bin) = public_sgctl();

    // An unprivileged user cannot connect at all (mode 0600).
    let mut cmd = Command::new(&bin);
    cmd.arg("--socket")
        .arg(ctl.socket())
        .args(["group", "list"]);
    cmd.uid(65534).gid(65534);
    let out = Ctl::run_command(cmd);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");

    // One that can open the file anyway (CAP_DAC_OVERRIDE kept across the
    // uid change) is refused by the daemon, which checks SO_PEERCRED.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--securebits=+no_setuid_fixup",
        "--inh-caps=+dac_override",
        "--ambient-caps=+dac_override",
        "--",
    ]);
    cmd.arg(&bin)
        .arg("--socket")
        .arg(ctl.socket())
        .args(["group", "list"]);
    let out = Ctl::run_command(cmd);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("root only"), "{out:?}");

    // Root is served.
    assert!(ctl.ok(&["group", "list"]).contains("sg-web"));
}

#[test]
fn the_health_check_finds_and_removes_redundant_rules() {
    let t = Topology::pair("apih").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80)]);
    let sgd = enforce(s, &[web()]);
    let ctl = sgd.ctl();
    let healthy = ctl.ok(&["group", "health-check", "sg-web"]);
    assert!(healthy.contains("healthy"), "{healthy}");

    // HTTP from the client alone, weaker: covered by HTTP from everyone.
    let client = format!("{}/32", c.ipv4());
    ctl.ok(&[
        "rule",
        "add",
        "sg-web",
        "ingress",
        "--id",
        "narrow",
        "--policy",
        "accept",
        "--priority",
        "5",
        "--ip-protocol",
        "tcp",
        "--port-range",
        "80/80",
        "--source-cidr-ip",
        &client,
    ]);
    let out = ctl.run(&["group", "health-check", "sg-web"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stdout.starts_with("FINDING ")
            && out.stdout.contains("redundant")
            && out.stdout.contains("narrow")
            && out.stdout.contains(WEB_HTTP),
        "{out:?}"
    );
    let out = ctl.run(&["--output", "json", "group", "health-check", "sg-web"]);
    assert_eq!(out.code, 4, "{out:?}");
    let report: sg_daemon::health::HealthReport = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert_eq!(report.findings[0].by.as_deref(), Some(WEB_HTTP));

    // Bad input changes nothing.
    let before = ctl.ok(&["export"]);
    let e = ctl.refused(&["group", "health-check", "sg-nope", "--remove"]);
    assert!(e.contains("no group sg-nope"), "{e}");
    assert_eq!(ctl.ok(&["export"]), before);

    let removed = ctl.ok(&["group", "health-check", "sg-web", "--remove"]);
    assert!(
        removed.contains("removed 1 redundant rule(s): narrow"),
        "{removed}"
    );
    let show = ctl.ok(&["group", "show", "sg-web"]);
    assert!(
        !show.contains("narrow") && show.contains(WEB_HTTP),
        "{show}"
    );
    assert!(
        ctl.ok(&["group", "health-check", "sg-web"])
            .contains("healthy")
    );
    check(&[probe("http", Tcp(80), c, s.ipv4(), PASS)]);
}

/// `sgctl group clone` and `sgctl group export` (SPEC §5): the clone gets
/// the rules with fresh ids and not the binding; the export writes the ECS
/// JSON or CSV file where it is told (or in sgctl's directory), named by
/// `[daemon] region`, and prints its path.
#[test]
fn clone_and_export_a_group() {
    let t = Topology::pair("apic").unwrap();
    let s = t.server();
    let sgd = enforce(s, &[web()]);
    let ctl = sgd.ctl();

    let said = ctl.ok(&[
        "group",
        "clone",
        "sg-web",
        "--id",
        "sg-web2",
        "--description",
        "copy, \"of\" web",
    ]);
    assert!(said.contains("cloned group sg-web as sg-web2"), "{said}");
    let groups: Vec<GroupInfo> = json!(ctl, &["group", "show", "sg-web2"]);
    let g = &groups[0];
    assert!(g.interfaces.is_empty(), "bindings are not copied: {g:?}");
    assert_eq!(g.group.ingress.len(), 1);
    let id = g.group.ingress[0].id.clone().unwrap();
    assert!(id.starts_with("sg-web2/ingress/"), "{id}");
    let e = ctl.refused(&["group", "clone", "sg-web", "--id", "sg-web2"]);
    assert!(e.contains("group sg-web2 exists"), "{e}");
    let e = ctl.refused(&["group", "clone", "sg-nope", "--id", "sg-x"]);
    assert!(e.contains("no group sg-nope"), "{e}");
    let empty: serde_json::Value = json_value(
        &ctl,
        &[
            "group",
            "clone",
            "sg-web",
            "--id",
            "sg-empty",
            "--without-rules",
        ],
    );
    assert!(
        empty["message"].as_str().unwrap().contains("0 rules"),
        "{empty}"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let path = ctl.ok(&["group", "export", "sg-web2", "--format", "json", "--dir", d]);
    let want = dir.path().join("ecs_local_sg-web2.json");
    assert_eq!(path.trim(), want.to_str().unwrap());
    let a: sg_daemon::ecs::SecurityGroupAttribute =
        serde_json::from_str(&fs::read_to_string(&want).unwrap()).unwrap();
    assert_eq!(a.region_id, "local");
    assert_eq!(a.description, "copy, \"of\" web");
    let p = &a.permissions.permission[0];
    assert_eq!(
        (
            p.direction.as_str(),
            p.ip_protocol.as_str(),
            p.port_range.as_str()
        ),
        ("ingress", "TCP", "80/80")
    );
    assert_eq!(p.source_cidr_ip, "0.0.0.0/0");
    assert_eq!(p.security_group_rule_id, id);

    let out = json_value(
        &ctl,
        &["group", "export", "sg-web2", "--format", "csv", "--dir", d],
    );
    let csv = PathBuf::from(out["path"].as_str().unwrap());
    let name = csv.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("ecs_sgRule_sg-web2_local_") && name.ends_with(".csv"),
        "{name}"
    );
    assert_eq!(
        name.len(),
        "ecs_sgRule_sg-web2_local_YYYY-MM-DD.csv".len(),
        "{name}"
    );
    let text = fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("Direction,IpProtocol,PortRange,SourceCidrIp,"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("ingress,TCP,80/80,0.0.0.0/0,"),
        "{text}"
    );

    // Without --dir: sgctl's current directory.
    let here = tempfile::tempdir().unwrap();
    let mut cmd = ctl.command(&["group", "export", "sg-web", "--format", "json"]);
    cmd.current_dir(here.path());
    let out = Ctl::run_command(cmd);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        here.path().join("ecs_local_sg-web.json").exists(),
        "{out:?}"
    );
    let e = ctl.refused(&["group", "export", "sg-nope", "--format", "csv", "--dir", d]);
    assert!(e.contains("no group sg-nope"), "{e}");
}

/// `sgctl group import` of the ECS console's JSON (the seeds' web-server
/// and SSH examples, IPv6 included) and of sg's own CSV export: a dry run,
/// the import, the second import skipping every rule, a refused file.
#[test]
fn import_a_group_from_ecs_files() {
    let t = Topology::pair("apii").unwrap();
    let s = t.server();
    let sgd = enforce(s, &[web()]);
    let ctl = sgd.ctl();
    ctl.ok(&["group", "create", "sg-imp"]);
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("web.json");
    fs::write(
        &console,
        include_str!("../../sg-daemon/src/ecs/fixtures/console_web_ssh.json"),
    )
    .unwrap();
    let console = console.to_str().unwrap();
    let rules = |ctl: &Ctl| {
        let groups: Vec<GroupInfo> = json!(ctl, &["group", "show", "sg-imp"]);
        groups[0].group.ingress.len() + groups[0].group.egress.len()
    };

    let said = ctl.ok(&["group", "import", "sg-imp", console, "--dry-run"]);
    assert!(said.contains("dry run: would add 6 rule(s)"), "{said}");
    assert_eq!(rules(&ctl), 0);
    let said = ctl.ok(&["group", "import", "sg-imp", console]);
    assert!(
        said.contains("imported 6 rule(s) into group sg-imp"),
        "{said}"
    );
    assert!(said.contains("index 5"), "{said}");
    assert_eq!(rules(&ctl), 6);

    // Export as CSV, import it again (without its extension: by content).
    let d = dir.path().to_str().unwrap();
    let csv = ctl.ok(&["group", "export", "sg-imp", "--format", "csv", "--dir", d]);
    let plain = dir.path().join("rules");
    fs::rename(csv.trim(), &plain).unwrap();
    let again = json_value(
        &ctl,
        &["group", "import", "sg-imp", plain.to_str().unwrap()],
    );
    assert_eq!(again["added"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 6, "{again}");
    assert_eq!(again["skipped"][0]["position"], "row 2", "{again}");
    assert_eq!(rules(&ctl), 6);

    // A file with an invalid rule: refused whole, by row and field.
    let text = fs::read_to_string(&plain).unwrap();
    let bad = dir.path().join("bad.csv");
    fs::write(
        &bad,
        format!("{text}ingress,TCP,70000/1,10.0.0.0/8,,,,,,,,,,Accept,1,,,\r\n"),
    )
    .unwrap();
    let out = ctl.run(&["group", "import", "sg-imp", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("row 8"), "{out:?}");
    assert!(out.stdout.contains("PortRange"), "{out:?}");
    assert!(out.stdout.contains("nothing imported"), "{out:?}");
    assert!(out.stderr.contains("import refused"), "{out:?}");
    assert_eq!(rules(&ctl), 6);
    let e = ctl.refused(&["group", "import", "sg-nope", console]);
    assert!(e.contains("no group sg-nope"), "{e}");
}
