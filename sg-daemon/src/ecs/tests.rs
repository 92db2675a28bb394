use super::*;
use crate::config::schema::Document;

const GROUP: &str = r#"
[[security_group]]
id = "sg-web"
name = "web"
description = "web servers"
inner_access_policy = "drop"

[[security_group.ingress]]
id = "ssh"
policy = "accept"
priority = 5
ip_protocol = "tcp"
port_range = "22/22"
source_cidr_ip = "198.51.100.0/24"
description = "office, \"main\" site"

[[security_group.ingress]]
id = "v6"
policy = "drop"
ip_protocol = "icmpv6"
source_cidr_ip = "2001:db8::/32"

[[security_group.ingress]]
id = "peers"
policy = "accept"
ip_protocol = "all"
source_group_id = "sg-db"

[[security_group.ingress]]
id = "five"
policy = "accept"
ip_protocol = "udp"
port_range = "53/53"
source_port_range = "1024/65535"
source_cidr_ip = "192.0.2.7"
dest_cidr_ip = "2001:db8::10"

[[security_group.egress]]
id = "lists"
policy = "accept"
priority = 100
ip_protocol = 6
port_range_list_id = "prl-web"
dest_prefix_list_id = "pl-office"
"#;

fn attribute() -> SecurityGroupAttribute {
    let doc = Document::from_toml(GROUP).unwrap();
    SecurityGroupAttribute::from_group("cn-test", &doc.security_group[0])
}

#[test]
fn a_group_maps_to_the_ecs_json() {
    let want = r#"{
  "RegionId": "cn-test",
  "SecurityGroupId": "sg-web",
  "SecurityGroupName": "web",
  "Description": "web servers",
  "InnerAccessPolicy": "Drop",
  "Permissions": {
    "Permission": [
      {
        "Direction": "ingress",
        "IpProtocol": "TCP",
        "PortRange": "22/22",
        "SourceCidrIp": "198.51.100.0/24",
        "Ipv6SourceCidrIp": "",
        "SourceGroupId": "",
        "SourcePrefixListId": "",
        "SourcePortRange": "",
        "DestCidrIp": "",
        "Ipv6DestCidrIp": "",
        "DestGroupId": "",
        "DestPrefixListId": "",
        "PortRangeListId": "",
        "Policy": "Accept",
        "Priority": "5",
        "Description": "office, \"main\" site",
        "SecurityGroupRuleId": "ssh",
        "CreateTime": ""
      },
      {
        "Direction": "ingress",
        "IpProtocol": "ICMPv6",
        "PortRange": "-1/-1",
        "SourceCidrIp": "",
        "Ipv6SourceCidrIp": "2001:db8::/32",
        "SourceGroupId": "",
        "SourcePrefixListId": "",
        "SourcePortRange": "",
        "DestCidrIp": "",
        "Ipv6DestCidrIp": "",
        "DestGroupId": "",
        "DestPrefixListId": "",
        "PortRangeListId": "",
        "Policy": "Drop",
        "Priority": "1",
        "Description": "",
        "SecurityGroupRuleId": "v6",
        "CreateTime": ""
      },
      {
        "Direction": "ingress",
        "IpProtocol": "ALL",
        "PortRange": "-1/-1",
        "SourceCidrIp": "",
        "Ipv6SourceCidrIp": "",
        "SourceGroupId": "sg-db",
        "SourcePrefixListId": "",
        "SourcePortRange": "",
        "DestCidrIp": "",
        "Ipv6DestCidrIp": "",
        "DestGroupId": "",
        "DestPrefixListId": "",
        "PortRangeListId": "",
        "Policy": "Accept",
        "Priority": "1",
        "Description": "",
        "SecurityGroupRuleId": "peers",
        "CreateTime": ""
      },
      {
        "Direction": "ingress",
        "IpProtocol": "UDP",
        "PortRange": "53/53",
        "SourceCidrIp": "192.0.2.7",
        "Ipv6SourceCidrIp": "",
        "SourceGroupId": "",
        "SourcePrefixListId": "",
        "SourcePortRange": "1024/65535",
        "DestCidrIp": "",
        "Ipv6DestCidrIp": "2001:db8::10",
        "DestGroupId": "",
        "DestPrefixListId": "",
        "PortRangeListId": "",
        "Policy": "Accept",
        "Priority": "1",
        "Description": "",
        "SecurityGroupRuleId": "five",
        "CreateTime": ""
      },
      {
        "Direction": "egress",
        "IpProtocol": "6",
        "PortRange": "",
        "SourceCidrIp": "",
        "Ipv6SourceCidrIp": "",
        "SourceGroupId": "",
        "SourcePrefixListId": "",
        "SourcePortRange": "",
        "DestCidrIp": "",
        "Ipv6DestCidrIp": "",
        "DestGroupId": "",
        "DestPrefixListId": "pl-office",
        "PortRangeListId": "prl-web",
        "Policy": "Accept",
        "Priority": "100",
        "Description": "",
        "SecurityGroupRuleId": "lists",
        "CreateTime": ""
      }
    ]
  }
}
"#;
    let a = attribute();
    assert_eq!(a.to_json(), want);
    // The same shape reads back (what an import will start from).
    let back: SecurityGroupAttribute = serde_json::from_str(want).unwrap();
    assert_eq!(back, a);
}

#[test]
fn a_group_maps_to_the_ecs_csv_with_quoting() {
    let want = "Direction,IpProtocol,PortRange,SourceCidrIp,Ipv6SourceCidrIp,SourceGroupId,SourcePrefixListId,SourcePortRange,DestCidrIp,Ipv6DestCidrIp,DestGroupId,DestPrefixListId,PortRangeListId,Policy,Priority,Description,SecurityGroupRuleId,CreateTime\r\n\
ingress,TCP,22/22,198.51.100.0/24,,,,,,,,,,Accept,5,\"office, \"\"main\"\" site\",ssh,\r\n\
ingress,ICMPv6,-1/-1,,2001:db8::/32,,,,,,,,,Drop,1,,v6,\r\n\
ingress,ALL,-1/-1,,,sg-db,,,,,,,,Accept,1,,peers,\r\n\
ingress,UDP,53/53,192.0.2.7,,,,1024/65535,,2001:db8::10,,,,Accept,1,,five,\r\n\
egress,6,,,,,,,,,,pl-office,prl-web,Accept,100,,lists,\r\n";
    assert_eq!(attribute().to_csv(), want);
}

#[test]
fn file_names_follow_the_ecs_console() {
    assert_eq!(json_file_name("local", "sg-web"), "ecs_local_sg-web.json");
    assert_eq!(
        csv_file_name("sg-web", "local", "2026-12-01"),
        "ecs_sgRule_sg-web_local_2026-12-01.csv"
    );
}

#[test]
fn the_mapping_reads_back_into_the_same_rules() {
    let doc = Document::from_toml(GROUP).unwrap();
    let g = &doc.security_group[0];
    let a = attribute();
    let mut rules = Vec::new();
    // Through the CSV and back.
    assert_eq!(
        permissions_from_csv(&a.to_csv()).unwrap(),
        a.permissions.permission
    );
    for p in &a.permissions.permission {
        let (dir, rule) = p.to_rule().unwrap();
        assert_eq!(&Permission::from_rule(dir, &rule), p);
        rules.push((dir, rule));
    }
    // The same rules, with the defaults written out (priority 1, all
    // ports as "-1/-1").
    let defaults = |r: &Rule| Rule {
        priority: r.priority.or(Some(1)),
        port_range: r
            .port_range
            .clone()
            .or_else(|| r.port_range_list_id.is_none().then(|| "-1/-1".into())),
        ..r.clone()
    };
    let want: Vec<_> = g
        .ingress
        .iter()
        .map(|r| (Direction::Ingress, defaults(r)))
        .chain(g.egress.iter().map(|r| (Direction::Egress, defaults(r))))
        .collect();
    assert_eq!(rules, want);

    // Any letter case; errors name the field.
    let p = Permission {
        direction: "Ingress".into(),
        ip_protocol: "tcp".into(),
        policy: "accept".into(),
        ..Default::default()
    };
    let (dir, rule) = p.to_rule().unwrap();
    assert_eq!(dir, Direction::Ingress);
    assert_eq!(rule.ip_protocol, Some(ProtocolValue::Name("tcp".into())));
    assert_eq!(rule.policy.as_deref(), Some("accept"));
    let bad = Permission {
        direction: "inbound".into(),
        ..Default::default()
    };
    assert!(bad.to_rule().unwrap_err().starts_with("Direction:"));
    let both = Permission {
        direction: "egress".into(),
        dest_cidr_ip: "192.0.2.0/24".into(),
        ipv6_dest_cidr_ip: "2001:db8::/32".into(),
        ..Default::default()
    };
    assert!(
        both.to_rule()
            .unwrap_err()
            .contains("DestCidrIp, Ipv6DestCidrIp")
    );
}

#[test]
fn a_group_without_rules_exports_the_header_alone() {
    let doc = Document::from_toml("[[security_group]]\nid = \"sg-empty\"\n").unwrap();
    let a = SecurityGroupAttribute::from_group("local", &doc.security_group[0]);
    assert_eq!(a.to_csv(), format!("{}\r\n", COLUMNS.join(",")));
    assert!(permissions_from_csv(&a.to_csv()).unwrap().is_empty());
}

#[test]
fn an_import_reads_either_format_by_name_or_by_content() {
    let a = attribute();
    let want = a.permissions.permission.clone();
    // sg's own files, by name and by content.
    for format in ["json", "JSON", ""] {
        assert_eq!(
            permissions_from_text(&a.to_json(), format).unwrap(),
            (want.clone(), false)
        );
    }
    for format in ["csv", ""] {
        assert_eq!(
            permissions_from_text(&a.to_csv(), format).unwrap(),
            (want.clone(), true)
        );
    }
    // A bare array, missing fields empty, a numeric priority, a BOM.
    let (p, csv) = permissions_from_text(
        "\u{feff} [{\"Direction\": \"EGRESS\", \"Priority\": 7, \"NicType\": \"intranet\"}]",
        "",
    )
    .unwrap();
    assert!(!csv);
    assert_eq!(
        (p[0].direction.as_str(), p[0].priority.as_str()),
        ("EGRESS", "7")
    );
    assert_eq!(p[0].port_range, "");
    assert_eq!(p[0].to_rule().unwrap().0, Direction::Egress);
    let e = permissions_from_text("{}", "json").unwrap_err();
    assert!(e.starts_with("not an ECS JSON file"), "{e}");
    let e = permissions_from_text("", "xml").unwrap_err();
    assert!(e.contains("unknown format"), "{e}");
}
