//! The scale benchmarks' config (also `benches/sharing.rs`'s): 10 groups
//! of 100 rules (60 inbound, 40 outbound) and one hypervisor-mode binding
//! per interface (named by `name`), each
//! with its own address and MAC. Every binding is on `sg-0`, the group a
//! change edits, so that one rule change reaches every interface; and on
//! one of the nine others (`sg-{1 + i % 9}`): 9 distinct lists of groups.

use std::path::Path;

use sg_daemon::model::Config;

pub const GROUPS: usize = 10;
const INBOUND_RULES: usize = 60;
const OUTBOUND_RULES: usize = 40;

/// The config text after `daemon` (a `[daemon]` table); `port0` is the
/// port of `sg-0`'s first inbound rule, the one a change moves. With
/// `instance_mode`, the bindings are in instance mode instead, without
/// addresses (the host's own are read).
pub fn text(
    daemon: &str,
    name: fn(usize) -> String,
    bindings: usize,
    port0: u16,
    instance_mode: bool,
) -> String {
    let mut toml = daemon.to_owned();
    for g in 0..GROUPS {
        toml += &format!("[[security_group]]\nid = \"sg-{g}\"\n");
        for r in 0..INBOUND_RULES {
            let port = if g == 0 && r == 0 {
                port0
            } else {
                1000 + (g * 100 + r) as u16
            };
            toml += &format!(
                "[[security_group.ingress]]\nid = \"in-{r}\"\npolicy = \"accept\"\n\
                 ip_protocol = \"tcp\"\nport_range = \"{port}/{port}\"\n\
                 source_cidr_ip = \"10.{g}.{r}.0/24\"\n"
            );
        }
        for r in 0..OUTBOUND_RULES {
            let port = 2000 + (g * 100 + r) as u16;
            toml += &format!(
                "[[security_group.egress]]\nid = \"out-{r}\"\npolicy = \"drop\"\n\
                 ip_protocol = \"udp\"\nport_range = \"{port}/{port}\"\n\
                 dest_cidr_ip = \"172.16.{g}.{r}/32\"\n"
            );
        }
    }
    for i in 0..bindings {
        let other = 1 + i % (GROUPS - 1);
        if instance_mode {
            // The interface's own addresses (none: veths without any).
            toml += &format!(
                "[[interface]]\nname = \"{}\"\nsecurity_groups = [\"sg-0\", \"sg-{other}\"]\n",
                name(i)
            );
            continue;
        }
        toml += &format!(
            "[[interface]]\nname = \"{}\"\nmode = \"hypervisor\"\n\
             addresses = [\"100.64.{}.{}\"]\nmac = \"02:00:00:00:{:02x}:{:02x}\"\n\
             security_groups = [\"sg-0\", \"sg-{other}\"]\n",
            name(i),
            i / 250,
            i % 250 + 1,
            i / 256,
            i % 256
        );
    }
    toml
}

pub fn parse(text: &str) -> Config {
    sg_daemon::config::parse(Path::new("scale.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}
