//! The file's checks: what is accepted, and where each problem is shown.

use super::*;
use crate::model::{Peer, PortRange};

fn errors(text: &str) -> Vec<ConfigError> {
    parse(Path::new("sg.toml"), text)
        .expect_err("the file is invalid")
        .0
}

const GOOD: &str = r#"
[daemon]
session_timeout_secs = 910
block_smtp_egress = true
state_dir = "/var/lib/sg"
runtime_dir = "/run/sg"
bpffs_dir = "/sys/fs/bpf/sg"

[[prefix_list]]
id = "pl-office"
max_entries = 10
entries = ["203.0.113.0/24", "2001:db8:1::/48"]

[[port_list]]
id = "prl-web"
max_entries = 5
entries = ["80/80", "8000/8080"]

[[security_group]]
id = "sg-web"
type = "basic"
inner_access_policy = "accept"
members = ["198.51.100.20"]

  [[security_group.ingress]]
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"

  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range_list_id = "prl-web"
  source_prefix_list_id = "pl-office"

  [[security_group.egress]]
  policy = "drop"
  priority = 2
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#;

#[test]
fn the_spec_example_without_hypervisor_mode_is_valid() {
    let config = parse(Path::new("sg.toml"), GOOD).unwrap();
    let g = &config.groups[0];
    assert_eq!(g.ingress.len(), 2);
    assert_eq!(g.ingress[0].id, "sg-web/ingress/a9921e34");
    assert_eq!(g.ingress[1].ports.len(), 2);
    assert!(matches!(&g.ingress[1].peer, Peer::Cidrs(nets) if nets.len() == 2));
    assert_eq!(g.egress[0].priority, 2);
    assert_eq!(g.egress[0].ports, vec![PortRange::ANY]);
    assert_eq!(config.daemon.session_timeout_secs, 910);
}

#[test]
fn every_problem_is_reported_with_line_field_and_allowed_values() {
    let text = GOOD
        .replace("priority = 2", "priority = 0")
        .replace("policy = \"drop\"", "policy = \"deny\"")
        .replace("\"80/80\"\n  source_cidr_ip", "\"0/80\"\n  source_cidr_ip");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let prio = errs
        .iter()
        .find(|e| e.field.ends_with("egress[0].priority"))
        .unwrap();
    assert_eq!(
        prio.line,
        text.lines()
            .position(|l| l.contains("priority = 0"))
            .unwrap()
            + 1
    );
    assert!(prio.message.contains("1..=100"), "{}", prio.message);
    let policy = errs
        .iter()
        .find(|e| e.field.ends_with("egress[0].policy"))
        .unwrap();
    assert!(policy.message.contains("\"accept\", \"drop\""));
    let port = errs
        .iter()
        .find(|e| e.field.ends_with("ingress[0].port_range"))
        .unwrap();
    assert!(port.to_string().starts_with("sg.toml:"), "{port}");
}

#[test]
fn unknown_fields_are_errors() {
    let errs = errors(&GOOD.replace("block_smtp_egress", "block_smtp"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("unknown field"),
        "{}",
        errs[0].message
    );
    assert_eq!(errs[0].line, 4);
}

/// Syntax and shape problems in different places are all reported,
/// each at its line, not only the first.
#[test]
fn every_syntax_and_shape_problem_is_reported() {
    let text = GOOD
        .replace("session_timeout_secs = 910", "session_timeout_secs = = 910")
        .replace("max_entries = 10", "max_entrys = 10")
        .replace("members = [\"198.51.100.20\"]", "members = 5");
    let errs = errors(&text);
    let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 11, 23], "{errs:#?}");
    assert!(
        errs[1].message.contains("unknown field `max_entrys`"),
        "{errs:#?}"
    );
    assert_eq!(errs[1].field, "prefix_list[0]");
    assert!(
        errs[2].message.contains("invalid type: integer `5`"),
        "{errs:#?}"
    );
    assert_eq!(errs[2].field, "security_group[0]");
}

#[test]
fn ports_only_for_tcp_and_udp() {
    let text = GOOD.replace(
        "ip_protocol = \"all\"\n  port_range = \"-1/-1\"",
        "ip_protocol = \"icmp\"\n  port_range = \"1/2\"",
    );
    assert!(errors(&text)[0].field.ends_with("egress[0].port_range"));
    let text = GOOD.replace(
        "ip_protocol = \"tcp\"\n  port_range = \"80/80\"",
        "ip_protocol = \"tcp\"\n  port_range = \"-1/-1\"",
    );
    assert!(errors(&text)[0].field.ends_with("ingress[0].port_range"));
}

#[test]
fn addresses_are_read_in_one_canonical_form() {
    for (text, model, written) in [
        ("2001:0db8:0000::0001", "2001:db8::1/128", "2001:db8::1"),
        ("2001:DB8:0:0::/32", "2001:db8::/32", "2001:db8::/32"),
        ("192.0.2.0/24", "192.0.2.0/24", "192.0.2.0/24"),
        ("198.51.100.7", "198.51.100.7/32", "198.51.100.7"),
    ] {
        assert_eq!(parse_cidr(text).unwrap().to_string(), model, "{text}");
        assert_eq!(values::canonical_cidr(text).unwrap(), written, "{text}");
    }
    // The document keeps them so too: what is stored, exported and
    // shown reads one way.
    let text = GOOD
        .replace("\"2001:db8:1::/48\"", "\"2001:0DB8:0001:0::/48\"")
        .replace("[\"198.51.100.20\"]", "[\"2001:db8:0:0::0020\"]");
    let (doc, _) = parse_document(Path::new("sg.toml"), &text).unwrap();
    assert_eq!(doc.prefix_list[0].entries[1], "2001:db8:1::/48");
    assert_eq!(doc.security_group[0].members, ["2001:db8::20"]);
    for (text, why) in [
        (
            "10.1.2.3/8",
            "host bits set (the network is \"10.0.0.0/8\")",
        ),
        (
            "2001:db8::1/32",
            "host bits set (the network is \"2001:db8::/32\")",
        ),
        (" 192.0.2.0/24", "surrounding spaces"),
        ("192.0.2.0/24 ", "surrounding spaces"),
        ("10.0.0.0/33", "not an address or CIDR"),
    ] {
        let e = values::cidr(text).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
}

/// Ids, names, descriptions and addresses the file and the API refuse
/// alike (`api/tests.rs` sends the same through the API): each
/// problem names its field and what is allowed.
pub(crate) const REFUSED: &[(&str, &str, &str, &str)] = &[
    // (text in GOOD, replaced by, field, message fragment)
    (
        "id = \"sg-web\"\n",
        "id = \"web\"\n",
        "security_group[0].id",
        "starting with \"sg-\"",
    ),
    (
        "id = \"sg-web\"\n",
        "id = \"sg-web/../x\"\n",
        "security_group[0].id",
        "letters, digits, '-', '_', '.'",
    ),
    (
        "id = \"sg-web\"\n",
        "id = \"sg-web\\nsg-fake\"\n",
        "security_group[0].id",
        "not an id",
    ),
    (
        "type = \"basic\"",
        "name = \"w\"",
        "security_group[0].name",
        "allowed: 2..=128 characters",
    ),
    (
        "type = \"basic\"",
        "name = \"web\\u0007\"",
        "security_group[0].name",
        "no control characters",
    ),
    (
        "type = \"basic\"",
        "description = \"web\\nsg-fake   basic\"",
        "security_group[0].description",
        "allowed: at most 512 characters, no control characters",
    ),
    (
        "type = \"basic\"",
        "description = \"\\u202egnp.exe\"",
        "security_group[0].description",
        "no control characters",
    ),
    (
        "  priority = 1\n",
        "  id = \"../etc\"\n",
        "security_group[0].ingress[0].id",
        "starting with a letter or digit",
    ),
    (
        "  priority = 1\n",
        "  id = \"ssh\\tweb\"\n",
        "security_group[0].ingress[0].id",
        "'/'",
    ),
    (
        "  priority = 1\n",
        "  description = \"a\\r\\nb\"\n",
        "security_group[0].ingress[0].description",
        "no control characters",
    ),
    (
        "id = \"pl-office\"",
        "id = \"pl-off ice\"",
        "prefix_list[0].id",
        "starting with \"pl-\"",
    ),
    (
        "id = \"prl-web\"",
        "id = \"web\"",
        "port_list[0].id",
        "starting with \"prl-\"",
    ),
    (
        "max_entries = 5\n",
        "max_entries = 5\ndescription = \"\\u001b[31m\"\n",
        "port_list[0].description",
        "no control characters",
    ),
    (
        "max_entries = 5\n",
        "max_entries = 5\nname = \"x\"\n",
        "port_list[0].name",
        "2..=128",
    ),
    (
        "\"203.0.113.0/24\"",
        "\"203.0.113.5/24\"",
        "prefix_list[0].entries[0]",
        "host bits set (the network is \"203.0.113.0/24\")",
    ),
    (
        "[\"198.51.100.20\"]",
        "[\"198.51.100.20/16\"]",
        "security_group[0].members[0]",
        "host bits set",
    ),
    (
        "source_cidr_ip = \"0.0.0.0/0\"",
        "source_cidr_ip = \" 0.0.0.0/0\"",
        "security_group[0].ingress[0].source_cidr_ip",
        "surrounding spaces",
    ),
    (
        "dest_cidr_ip = \"0.0.0.0/0\"",
        "dest_cidr_ip = \"192.0.2.5/24\"",
        "security_group[0].egress[0].dest_cidr_ip",
        "host bits set (the network is \"192.0.2.0/24\")",
    ),
    (
        "source_cidr_ip = \"0.0.0.0/0\"",
        "source_cidr_ip = \"0.0.0.0/0\"\n  dest_cidr_ip = \"2001:db8::1\"",
        "security_group[0].ingress[0].dest_cidr_ip",
        "2001:db8::1/128 is IPv6 but the remote side 0.0.0.0/0 is IPv4",
    ),
    (
        "dest_cidr_ip = \"0.0.0.0/0\"",
        "dest_cidr_ip = \"2001:db8::/32\"\n  source_cidr_ip = \"192.0.2.1\"",
        "security_group[0].egress[0].source_cidr_ip",
        "is IPv4 but the remote side 2001:db8::/32 is IPv6",
    ),
];

#[test]
fn text_and_addresses_that_could_lie_are_refused() {
    let long = |n: usize| "x".repeat(n);
    let mut cases: Vec<(String, String, &str, &str)> = REFUSED
        .iter()
        .map(|(a, b, f, m)| (a.to_string(), b.to_string(), *f, *m))
        .collect();
    cases.push((
        "id = \"sg-web\"\n".into(),
        format!("id = \"sg-web\"\ndescription = \"{}\"\n", long(513)),
        "security_group[0].description",
        "(513 characters)",
    ));
    cases.push((
        "type = \"basic\"".into(),
        format!("name = \"{}\"", long(129)),
        "security_group[0].name",
        "(129 characters)",
    ));
    cases.push((
        "id = \"pl-office\"".into(),
        format!("id = \"pl-{}\"", long(126)),
        "prefix_list[0].id",
        "1..=128 characters",
    ));
    for (from, to, field, says) in &cases {
        assert!(GOOD.contains(from.as_str()), "{from}");
        let text = GOOD.replacen(from.as_str(), to, 1);
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.field == *field && e.message.contains(says)),
            "{to}: no {field} saying {says:?} in {errs:#?}"
        );
    }
    // At the limits, all is well.
    let text = GOOD
        .replacen(
            "type = \"basic\"",
            &format!("name = \"{}\"\ndescription = \"{}\"", long(128), long(512)),
            1,
        )
        .replacen("  priority = 1\n", "  id = \"ssh-22_v1.0/a\"\n", 1);
    parse(Path::new("sg.toml"), &text).unwrap();
    let text = GOOD.replacen(
        "type = \"basic\"",
        "name = \"ab\"\ndescription = \"Web servers: ports 80, 443 (élan)\"",
        1,
    );
    parse(Path::new("sg.toml"), &text).unwrap();
}

#[test]
fn bindings_are_checked() {
    let text = GOOD.replace(
        "security_groups = [\"sg-web\"]",
        "security_groups = [\"sg-web\", \"sg-web\", \"sg-nope\"]",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    let eleven: Vec<String> = (0..11).map(|i| format!("\"sg-{i}\"")).collect();
    let text = GOOD.replace("[\"sg-web\"]\n", &format!("[{}]\n", eleven.join(", ")));
    assert!(
        errors(&text)
            .iter()
            .any(|e| e.message.contains("allowed: 1..=10"))
    );
}

/// Where a file shows a problem: at the value that is wrong, at the
/// number to change, or at the table that lacks or mixes fields.
#[test]
fn problems_point_at_what_to_change() {
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.trim() == needle).unwrap() + 1;
    let at = |text: &str, field: &str| {
        let errs = errors(text);
        let e = errs
            .iter()
            .find(|e| e.field.ends_with(field))
            .unwrap_or_else(|| panic!("{errs:#?}"));
        e.line
    };
    // Too many entries: the max_entries to raise.
    let text = GOOD.replace("max_entries = 5", "max_entries = 1");
    assert_eq!(
        at(&text, "port_list[0].entries"),
        line_of(&text, "max_entries = 1")
    );
    // Two remote sides: the rule that has both.
    let text = GOOD.replace(
        "source_cidr_ip = \"0.0.0.0/0\"",
        "source_cidr_ip = \"0.0.0.0/0\"\n  source_group_id = \"sg-web\"",
    );
    let rule = text
        .lines()
        .position(|l| l.contains("port_range = \"80/80\""))
        .unwrap()
        - 3;
    assert_eq!(at(&text, "ingress[0].source_cidr_ip"), rule);
    // A hypervisor binding with an empty address list: the binding.
    let text = GOOD.replace(
        "name = \"eth0\"",
        "name = \"eth0\"\nmode = \"hypervisor\"\naddresses = []",
    );
    assert_eq!(
        at(&text, "interface[0].addresses"),
        line_of(&text, "[[interface]]")
    );
    // Too many group references: the group's id.
    let refs: String = (0..21)
        .map(|i| format!("\n  [[security_group.egress]]\n  id = \"r{i}\"\n  policy = \"accept\"\n  ip_protocol = \"all\"\n  dest_group_id = \"sg-web\"\n"))
        .collect();
    let text = format!("{GOOD}\n[[security_group]]\nid = \"sg-many\"\n{refs}");
    assert_eq!(
        at(&text, "security_group[1]"),
        line_of(&text, "id = \"sg-many\"")
    );
}

/// `mac` pins a hypervisor-mode instance's source MAC: a unicast MAC,
/// in hypervisor mode only; each problem names the field and what is
/// allowed.
#[test]
fn a_binding_mac_is_a_unicast_mac_in_hypervisor_mode() {
    let with = |mode: &str, mac: &str| {
        GOOD.replace(
            "name = \"eth0\"",
            &format!("name = \"eth0\"\n{mode}addresses = [\"192.0.2.7\"]\nmac = \"{mac}\""),
        )
    };
    let hypervisor = "mode = \"hypervisor\"\n";
    let config = parse(Path::new("sg.toml"), &with(hypervisor, "02:00:00:0A:bc:07")).unwrap();
    assert_eq!(config.interfaces[0].mac, Some([2, 0, 0, 0x0a, 0xbc, 7]));
    let no_mac = parse(Path::new("sg.toml"), GOOD).unwrap();
    assert_eq!(no_mac.interfaces[0].mac, None);
    for (mode, mac, says) in [
        (hypervisor, "02:00:00:00:07", "six hexadecimal bytes"),
        (hypervisor, "02-00-00-00-00-07", "six hexadecimal bytes"),
        (hypervisor, "02:00:00:00:00:7", "six hexadecimal bytes"),
        (hypervisor, "01:00:5e:00:00:01", "a unicast MAC"),
        (hypervisor, "00:00:00:00:00:00", "a unicast MAC"),
        ("", "02:00:00:00:00:07", "only with mode = \"hypervisor\""),
    ] {
        let errs = errors(&with(mode, mac));
        assert_eq!(errs.len(), 1, "{mac}: {errs:#?}");
        assert_eq!(errs[0].field, "interface[0].mac", "{mac}");
        assert!(errs[0].message.contains(says), "{mac}: {}", errs[0].message);
    }
}

/// Seed 002: a rule's authorization object is a basic group; and two
/// hypervisor-mode bindings cannot claim one instance address.
#[test]
fn enterprise_groups_are_no_authorization_object_and_instance_addresses_are_unique() {
    let enterprise = "\n[[security_group]]\nid = \"sg-ent\"\ntype = \"enterprise\"\n";
    let text = GOOD.replace(
        "source_cidr_ip = \"0.0.0.0/0\"",
        "source_group_id = \"sg-ent\"",
    ) + enterprise;
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.field.ends_with("ingress[0].source_group_id")
                && e.message.contains("is an enterprise group")),
        "{errs:#?}"
    );
    let vm = |name: &str, addr: &str| {
        format!(
            "\n[[interface]]\nname = \"{name}\"\nmode = \"hypervisor\"\naddresses = [\"{addr}\"]\nsecurity_groups = [\"sg-web\"]\n"
        )
    };
    let text = format!(
        "{GOOD}{}{}",
        vm("tap1", "192.0.2.11"),
        vm("tap2", "192.0.2.11")
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.field == "interface[2].addresses[0]"
            && e.message
                .contains("already the address of the instance behind \"tap1\"")),
        "{errs:#?}"
    );
    let text = format!(
        "{GOOD}{}{}",
        vm("tap1", "192.0.2.11"),
        vm("tap2", "192.0.2.12")
    );
    parse(Path::new("sg.toml"), &text).unwrap();
}

#[test]
fn a_group_lists_at_most_its_types_number_of_members() {
    let members = |n: usize| {
        (0..n)
            .map(|i| format!("\"10.{}.{}.{}\"", i >> 16, (i >> 8) & 255, i & 255))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let group = |kind: &str, n: usize| {
        format!(
            "[[security_group]]\nid = \"sg-a\"\ntype = \"{kind}\"\nmembers = [{}]\n",
            members(n)
        )
    };
    parse(Path::new("sg.toml"), &group("basic", 6_000)).unwrap();
    parse(Path::new("sg.toml"), &group("enterprise", 6_001)).unwrap();
    let errs = errors(&group("basic", 6_001));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].field, "security_group[0].members");
    assert_eq!(errs[0].line, 4);
    assert!(
        errs[0]
            .message
            .contains("6001 addresses; allowed: at most 6000 for a group of type \"basic\""),
        "{}",
        errs[0].message
    );
    let errs = errors(&group("enterprise", 65_537));
    assert!(
        errs[0]
            .message
            .contains("at most 65536 for a group of type \"enterprise\""),
        "{}",
        errs[0].message
    );
}

#[test]
fn the_rule_quota_counts_lists_at_max_entries() {
    let text = GOOD.replace("max_entries = 10", "max_entries = 999");
    let errs = errors(&text);
    assert!(errs[0].message.contains("at most 1000"), "{errs:#?}");
}

#[test]
fn groups_of_one_interface_share_a_type() {
    let text = format!(
        "{GOOD}\n[[security_group]]\nid = \"sg-ent\"\ntype = \"enterprise\"\n\n[[interface]]\nname = \"eth1\"\nsecurity_groups = [\"sg-web\", \"sg-ent\"]\n"
    );
    let errs = errors(&text);
    assert!(
        errs[0]
            .message
            .contains("must all be basic or all enterprise"),
        "{errs:#?}"
    );
}

mod daemon;
mod datastore;
