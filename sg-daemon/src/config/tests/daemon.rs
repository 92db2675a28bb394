//! The `[daemon]` table's checks: session timeouts and table sizes, the
//! attach mode, the region.

use super::*;

#[test]
fn session_timeouts_are_checked_with_their_defaults() {
    let config = parse(Path::new("sg.toml"), GOOD).unwrap();
    let d = &config.daemon;
    assert_eq!((d.syn_timeout_secs, d.tcp_closed_timeout_secs), (60, 10));
    let set = GOOD.replace(
        "session_timeout_secs = 910",
        "session_timeout_secs = 600\nsyn_timeout_secs = 5\ntcp_closed_timeout_secs = 2",
    );
    let d = parse(Path::new("sg.toml"), &set).unwrap().daemon;
    let secs = (
        d.session_timeout_secs,
        d.syn_timeout_secs,
        d.tcp_closed_timeout_secs,
    );
    assert_eq!(secs, (600, 5, 2));
    let bad = GOOD.replace(
        "session_timeout_secs = 910",
        "syn_timeout_secs = 0\ntcp_closed_timeout_secs = -3",
    );
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    for (field, default) in [("syn_timeout_secs", 60), ("tcp_closed_timeout_secs", 10)] {
        let e = errs
            .iter()
            .find(|e| e.field == format!("daemon.{field}"))
            .unwrap_or_else(|| panic!("no error for {field}: {errs:#?}"));
        assert!(
            e.message.contains("allowed: 1..=604800 seconds")
                && e.message.contains(&format!("default {default}")),
            "{}",
            e.message
        );
    }
}

#[test]
fn the_session_table_size_is_checked_and_larger_on_a_hypervisor() {
    let size = |text: &str| {
        parse(Path::new("sg.toml"), text)
            .unwrap()
            .daemon
            .session_table_size
    };
    assert_eq!(size(GOOD), 131_072);
    let hypervisor = GOOD.replace(
        "name = \"eth0\"",
        "name = \"eth0\"\nmode = \"hypervisor\"\naddresses = [\"192.0.2.10\"]",
    );
    assert_eq!(size(&hypervisor), 262_144);
    let set = |n: &str, text: &str| {
        text.replace(
            "session_timeout_secs = 910",
            &format!("session_timeout_secs = 910\nsession_table_size = {n}"),
        )
    };
    assert_eq!(size(&set("4096", GOOD)), 4096);
    assert_eq!(size(&set("4096", &hypervisor)), 4096);
    for bad in ["0", "1023", "16777217", "-1"] {
        let errs = errors(&set(bad, GOOD));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].field, "daemon.session_table_size");
        assert!(
            errs[0].message.contains("allowed: 1024..=16777216 entries (default 131072, 262144 with a binding in hypervisor mode)"),
            "{}",
            errs[0].message
        );
    }
}

#[test]
fn attach_is_auto_tcx_or_tc() {
    use crate::model::AttachMode;
    let with = |value: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\nattach = {value:?}\n"));
    assert_eq!(
        parse(Path::new("sg.toml"), GOOD).unwrap().daemon.attach,
        AttachMode::Auto
    );
    for mode in AttachMode::ALL {
        let config = parse(Path::new("sg.toml"), &with(mode.name())).unwrap();
        assert_eq!(config.daemon.attach, mode);
    }
    let errs = errors(&with("xdp"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].field, "daemon.attach");
    assert!(
        errs[0].message.contains(r#"allowed: "auto", "tcx", "tc""#),
        "{}",
        errs[0].message
    );
}

#[test]
fn region_defaults_to_local_and_names_files_safely() {
    let with = |value: &str| GOOD.replace("[daemon]\n", &format!("[daemon]\nregion = {value:?}\n"));
    assert_eq!(
        parse(Path::new("sg.toml"), GOOD).unwrap().daemon.region,
        "local"
    );
    let config = parse(Path::new("sg.toml"), &with("cn-hangzhou")).unwrap();
    assert_eq!(config.daemon.region, "cn-hangzhou");
    for bad in ["", "../etc", "CN", "a b"] {
        let errs = errors(&with(bad));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert_eq!(errs[0].field, "daemon.region");
        assert!(errs[0].message.contains("allowed:"), "{}", errs[0].message);
    }
}

#[test]
fn snapshot_policies_and_the_delay_are_checked_at_their_lines() {
    let config = parse(Path::new("sg.toml"), GOOD).unwrap();
    assert_eq!(config.daemon.snapshot_delay_secs, 300);
    let good = format!(
        "{}\n[[snapshot_policy]]\nid = \"daily\"\nsecurity_groups = [\"sg-web\"]\n",
        GOOD.replace("[daemon]\n", "[daemon]\nsnapshot_delay_secs = 5\n")
    );
    let config = parse(Path::new("sg.toml"), &good).unwrap();
    assert_eq!(config.daemon.snapshot_delay_secs, 5);
    let p = &config.snapshot_policies[0];
    assert_eq!((p.enabled, p.retention_days), (true, 1), "the defaults");
    let groups: Vec<String> = (0..11).map(|i| format!("\"sg-g{i}\"")).collect();
    let bad = format!(
        "{}\n[[snapshot_policy]]\nid = \"daily\"\nretention_days = 0\nsecurity_groups = [\"sg-nope\"]\n\
         [[snapshot_policy]]\nid = \"daily\"\nsecurity_groups = [{}]\n",
        GOOD.replace("[daemon]\n", "[daemon]\nsnapshot_delay_secs = -1\n"),
        groups.join(", ")
    );
    let errs = errors(&bad);
    let line_of = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let find = |field: &str| {
        errs.iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("{field}: {errs:#?}"))
    };
    let delay = find("daemon.snapshot_delay_secs");
    assert!(
        delay.message.contains("0..=86400 seconds (default 300)"),
        "{delay:?}"
    );
    assert_eq!(delay.line, line_of("snapshot_delay_secs"));
    let retention = find("snapshot_policy[0].retention_days");
    assert!(retention.message.contains("1..=30 days"), "{retention:?}");
    assert_eq!(retention.line, line_of("retention_days"));
    assert!(
        find("snapshot_policy[0].security_groups[0]")
            .message
            .contains("no group \"sg-nope\"")
    );
    assert!(find("snapshot_policy[1].id").message.contains("duplicate"));
    assert!(
        find("snapshot_policy[1].security_groups")
            .message
            .contains("at most 10")
    );
}
