//! Generated rule ids: `<group>/<direction>/<8 hex>`, derived from the
//! rule's normalised matching fields, so that an id does not change when
//! other rules come or go, and an id freed through the API can only come
//! back for a rule of the same content.

use super::{
    schema::{self, ProtocolValue},
    values::{canonical_cidr, parse_protocol},
};
use crate::model::{Direction, Protocol};

/// The id a rule without one gets in `group`, `dir`: the content hash, with
/// `-2`, `-3`, ... appended while `taken` says the id is in use (by an
/// identical rule before it, or an explicit id).
pub fn generated(
    group: &str,
    dir: Direction,
    rule: &schema::Rule,
    taken: impl Fn(&str) -> bool,
) -> String {
    let base = format!("{group}/{}/{:08x}", dir.name(), content_hash(rule));
    let mut id = base.clone();
    let mut n = 2;
    while taken(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// FNV-1a (32 bits) of the rule's matching fields as normalised text: the
/// id and description are left out, the priority defaults to 1, the
/// protocol is its number, addresses are canonical. A hash of its own, not
/// the standard library's, so that ids stay the same across versions.
fn content_hash(r: &schema::Rule) -> u32 {
    let protocol = r.ip_protocol.as_ref().map(|p| match parse_protocol(p) {
        Some(Protocol::All) => "all".to_owned(),
        Some(Protocol::Number(n)) => n.to_string(),
        None => match p {
            ProtocolValue::Name(s) => s.clone(),
            ProtocolValue::Number(n) => n.to_string(),
        },
    });
    let cidr = |c: &Option<String>| {
        c.as_ref()
            .map(|c| canonical_cidr(c).unwrap_or_else(|| c.clone()))
    };
    let fields = [
        ("policy", r.policy.clone()),
        ("priority", Some(r.priority.unwrap_or(1).to_string())),
        ("ip_protocol", protocol),
        ("port_range", r.port_range.clone()),
        ("port_range_list_id", r.port_range_list_id.clone()),
        ("source_port_range", r.source_port_range.clone()),
        ("source_cidr_ip", cidr(&r.source_cidr_ip)),
        ("source_group_id", r.source_group_id.clone()),
        ("source_prefix_list_id", r.source_prefix_list_id.clone()),
        ("dest_cidr_ip", cidr(&r.dest_cidr_ip)),
        ("dest_group_id", r.dest_group_id.clone()),
        ("dest_prefix_list_id", r.dest_prefix_list_id.clone()),
    ];
    let mut h: u32 = 0x811c_9dc5;
    for (name, value) in fields {
        let Some(value) = value else { continue };
        for b in format!("{name}={}\n", value.trim()).bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config;

    const SSH: &str = "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\"\n";
    const HTTP: &str = "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"0.0.0.0/0\"\n";
    const MYSQL: &str = "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"3306/3306\"\nsource_cidr_ip = \"10.0.0.0/8\"\n";
    /// MYSQL written another way: same rule, same id.
    const MYSQL_AGAIN: &str = "description = \"db\"\npolicy = \"accept\"\npriority = 1\nip_protocol = \"TCP\"\nport_range = \"3306/3306\"\nsource_cidr_ip = \"10.0.0.0/8\"\n";

    /// The generated ingress ids of a group with these rules, in order.
    fn ids(rules: &[&str]) -> Vec<String> {
        let mut text = String::from("[[security_group]]\nid = \"sg-web\"\n");
        for r in rules {
            text.push_str("[[security_group.ingress]]\n");
            text.push_str(r);
        }
        let config = config::parse(Path::new("sg.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        config.groups[0]
            .ingress
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn a_rules_generated_id_depends_on_its_content_not_on_the_others() {
        let [ssh, http, mysql] = [SSH, HTTP, MYSQL].map(|r| ids(&[r]).remove(0));
        // (rules of a file, the ids they must get)
        let cases: [(&[&str], &[&String]); 6] = [
            (&[SSH, HTTP, MYSQL], &[&ssh, &http, &mysql]),
            // The same file read twice.
            (&[SSH, HTTP, MYSQL], &[&ssh, &http, &mysql]),
            // An earlier rule removed: the later ones keep theirs.
            (&[HTTP, MYSQL], &[&http, &mysql]),
            (&[SSH, MYSQL], &[&ssh, &mysql]),
            // Reordered.
            (&[MYSQL, SSH], &[&mysql, &ssh]),
            (&[HTTP, MYSQL_AGAIN], &[&http, &mysql]),
        ];
        for (rules, want) in cases {
            assert_eq!(ids(rules).iter().collect::<Vec<_>>(), want, "{rules:?}");
        }
        assert_ne!(ssh, http);
        assert!(mysql.starts_with("sg-web/ingress/") && mysql.len() == "sg-web/ingress/".len() + 8);
    }

    #[test]
    fn identical_rules_and_explicit_ids_get_a_deterministic_suffix() {
        let got = ids(&[SSH, SSH, SSH]);
        assert_eq!(got[1], format!("{}-2", got[0]));
        assert_eq!(got[2], format!("{}-3", got[0]));
        let explicit = format!("id = {:?}\n{HTTP}", got[0]);
        let got2 = ids(&[&explicit, SSH]);
        assert_eq!(got2, [got[0].clone(), got[1].clone()]);
    }
}
