//! The systemd unit and the example config in `packaging/`: the unit passes
//! `systemd-analyze verify` and keeps the directives sgd relies on; the
//! example config passes `sgd --check`. (`cargo xtask install` itself is
//! tested by xtask's unit tests, over a temporary DESTDIR.)

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};

const UNIT: &str = include_str!("../../packaging/systemd/sgd.service");
const CONFIG: &str = include_str!("../../packaging/sg.toml");
/// The unit's `ExecStart=` binary, which `cargo xtask install` rewrites.
const UNIT_EXEC: &str = "/usr/local/bin/sgd";

/// `section -> key -> values`, in file order (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "line {}: continuation lines are not expected here",
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        let section = section
            .clone()
            .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
        unit.entry(section)
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

/// The single value of `section.key`.
fn value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("[{section}] has no {key}="));
    assert_eq!(values.len(), 1, "[{section}] {key}= given more than once");
    &values[0]
}

/// Every word of every `section.key` line.
fn words(unit: &Unit, section: &str, key: &str) -> Vec<String> {
    unit.get(section)
        .and_then(|s| s.get(key))
        .into_iter()
        .flatten()
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

#[test]
fn unit_has_the_directives_sgd_relies_on() {
    let unit = parse_unit(UNIT);
    let service = |key| value(&unit, "Service", key);

    assert_eq!(service("Type"), "notify");
    assert_eq!(service("NotifyAccess"), "main");
    assert_eq!(
        service("ExecStart"),
        format!("{UNIT_EXEC} --config /etc/sg/sg.toml")
    );
    assert_eq!(service("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(service("Restart"), "on-failure");
    assert!(!service("RestartSec").is_empty());
    assert_eq!(service("StateDirectory"), "sg");
    assert_eq!(service("RuntimeDirectory"), "sg");
    assert_eq!(service("RuntimeDirectoryPreserve"), "yes");
    assert_eq!(service("LimitMEMLOCK"), "infinity");
    assert_eq!(service("NoNewPrivileges"), "yes");
    assert_eq!(service("ProtectSystem"), "strict");
    let mut caps = words(&unit, "Service", "CapabilityBoundingSet");
    caps.sort();
    assert_eq!(
        caps,
        [
            "CAP_BPF",
            "CAP_NET_ADMIN",
            "CAP_PERFMON",
            "CAP_SYS_ADMIN",
            "CAP_SYS_RESOURCE"
        ]
    );
    assert_eq!(
        words(&unit, "Service", "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"]
    );

    // Pins under /sys/fs/bpf must be writable and survive a restart: it is
    // writable, nothing but ReadWritePaths= names it, ProtectKernelTunables=
    // (which would make it read-only) is off, and nothing runs at stop.
    assert!(words(&unit, "Service", "ReadWritePaths").contains(&"/sys/fs/bpf".to_owned()));
    for (key, values) in &unit["Service"] {
        if key != "ReadWritePaths" {
            assert!(
                !values.iter().any(|v| v.contains("/sys/fs/bpf")),
                "{key}= touches /sys/fs/bpf: {values:?}"
            );
        }
    }
    assert!(
        !unit["Service"].contains_key("ProtectKernelTunables"),
        "ProtectKernelTunables= mounts /sys/fs/bpf read-only"
    );
    for key in ["ExecStop", "ExecStopPost", "TemporaryFileSystem"] {
        assert!(
            !unit["Service"].contains_key(key),
            "{key}= in a unit whose pins must outlive the process"
        );
    }

    // A firewall comes up before the network.
    assert_eq!(value(&unit, "Unit", "Wants"), "network-pre.target");
    assert_eq!(value(&unit, "Unit", "After"), "network-pre.target");
    assert_eq!(value(&unit, "Unit", "Before"), "network.target");
    assert_eq!(value(&unit, "Install", "WantedBy"), "multi-user.target");
}

/// The example's directories are the ones the unit creates and opens up.
#[test]
fn example_config_uses_the_units_directories() {
    for line in [
        r#"state_dir = "/var/lib/sg""#,
        r#"runtime_dir = "/run/sg""#,
        r#"bpffs_dir = "/sys/fs/bpf/sg""#,
    ] {
        assert!(
            CONFIG.lines().any(|l| l.trim_start().starts_with(line)),
            "packaging/sg.toml has no `{line}`"
        );
    }
}

#[test]
fn example_config_passes_sgd_check() {
    let (ok, out) = sg_tests::sgd_check(CONFIG);
    assert!(ok, "packaging/sg.toml fails `sgd --check`:\n{out}");
}

/// Runs `systemd-analyze verify` on `unit_text` saved as `sgd.service` and
/// returns its exit status and the lines it printed about that unit, plus
/// any other lines (about units it pulled in) as notes.
fn analyze(unit_text: &str) -> (bool, Vec<String>, Vec<String>) {
    let dir = tempfile::Builder::new()
        .prefix("sg-unit-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("sgd.service");
    fs::write(&path, unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env_remove("SYSTEMD_LOG_LEVEL")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = |l: &&str| l.contains("sgd.service") || l.contains(&*path.to_string_lossy());
    let (mine, other): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(ours);
    (
        out.status.success(),
        mine.into_iter().map(str::to_owned).collect(),
        other.into_iter().map(str::to_owned).collect(),
    )
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "no systemd-analyze on this machine: `cargo xtask setup` installs Debian's \
             `systemd` package for it"
        );
    }
    // systemd-analyze checks that ExecStart= exists, so point it at the
    // built sgd, as `cargo xtask install` points it at the installed one.
    let sgd = sg_tests::sgd_path();
    let sgd = sgd.to_str().expect("a UTF-8 path to sgd");
    assert!(
        !sgd.contains(char::is_whitespace) && !sgd.contains(['%', '$']),
        "{sgd}: not usable in ExecStart= as is"
    );
    let unit = UNIT.replace(
        &format!("ExecStart={UNIT_EXEC} "),
        &format!("ExecStart={sgd} "),
    );
    assert_ne!(unit, UNIT, "no ExecStart={UNIT_EXEC} line to rewrite");

    let (ok, mine, other) = analyze(&unit);
    for line in &other {
        eprintln!("note (about another unit): {line}");
    }
    assert!(
        ok && mine.is_empty(),
        "systemd-analyze verify complains about sgd.service:\n{}",
        mine.join("\n")
    );

    // And it does report problems in this file, so the silence above means
    // something.
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystem=bogus");
    let (_, mine, _) = analyze(&broken);
    assert!(
        mine.iter()
            .any(|l| l.contains("ProtectSystem") || l.contains("bogus")),
        "systemd-analyze verify said nothing about a bad value: {mine:?}"
    );
}
