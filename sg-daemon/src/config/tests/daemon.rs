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
