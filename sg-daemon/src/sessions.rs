//! The kernel's sessions in the daemon's terms, for the sweeper and the
//! views (`sgctl sessions`, `diagnose`): the name of each entry's state,
//! whether it is live (by the kernel's own per-state timeouts,
//! `SessionTimeouts`), the packet that opened it, and whether an ended
//! session is still ended under the rules in force.

use sg_common::{
    CtKey, CtValue, SESSION_ANSWERED, SESSION_CLOSED, SESSION_ESTABLISHED, SESSION_HALF_OPEN,
    SessionTimeouts,
};

use crate::{
    model::Direction,
    reference::{self, Fragment, ICMP, ICMPV6, Interface, Packet, TCP, TCP_SYN},
};

/// How `sgctl sessions` names the state of a session.
pub fn state_name(value: &CtValue) -> &'static str {
    if value.ended != 0 {
        return "ended";
    }
    match value.state {
        SESSION_HALF_OPEN => "half-open",
        SESSION_ANSWERED => "answered",
        SESSION_ESTABLISHED => "established",
        SESSION_CLOSED => "closed",
        _ => "open",
    }
}

/// Whether the kernel still lets packets through `value` at `now_ns`: not
/// expired (by its state's timeout) and not ended.
pub fn is_live(value: &CtValue, timeouts: &SessionTimeouts, now_ns: u64) -> bool {
    value.ended == 0 && !timeouts.expired(value.state, value.last_seen_ns, now_ns)
}

/// Seconds until `value` expires without traffic: 0 once expired, and for
/// an ended session, which stays while a drop rule matches it.
pub fn expires_in_secs(value: &CtValue, timeouts: &SessionTimeouts, now_ns: u64) -> u64 {
    if !is_live(value, timeouts, now_ns) {
        return 0;
    }
    let idle = now_ns.saturating_sub(value.last_seen_ns);
    timeouts.idle_ns(value.state).saturating_sub(idle) / 1_000_000_000
}

/// The packet that opened the session `key`, and its direction (the rules
/// an ended session is checked against look at nothing else).
pub fn opening(key: &CtKey, value: &CtValue) -> (Direction, Packet) {
    let opened = Direction::from_raw(value.opened);
    let local = sg_common::addr::from_bytes(key.family, &key.local);
    let remote = sg_common::addr::from_bytes(key.family, &key.remote);
    let (src, dst, src_port, dst_port) = match opened {
        Direction::Ingress => (remote, local, key.remote_port, key.local_port),
        Direction::Egress => (local, remote, key.local_port, key.remote_port),
    };
    let packet = Packet {
        src,
        dst,
        proto: key.proto,
        src_port,
        dst_port,
        icmp: match key.proto {
            ICMP => Some((8, 0)),
            ICMPV6 => Some((128, 0)),
            _ => None,
        },
        tcp_flags: if key.proto == TCP { TCP_SYN } else { 0 },
        fragment: Fragment::No,
        quoted: None,
        nd_target: None,
    };
    (opened, packet)
}

/// Whether an ended session stays ended under `iface`'s config: a drop rule
/// or the SMTP block still ends it. Otherwise the kernel forgets it at its
/// next packet, and the sweeper may free it.
pub fn stays_ended(iface: &Interface, key: &CtKey, value: &CtValue) -> bool {
    let (opened, packet) = opening(key, value);
    reference::ending(iface, opened, &packet).is_some()
}

/// The drop rule that keeps an ended session ended under `iface`'s rules,
/// as (group, rule id); `None` when no explicit drop rule matches it any
/// more (the kernel then forgets it at its next packet).
pub fn ended_by(iface: &Interface, key: &CtKey, value: &CtValue) -> Option<(String, String)> {
    let (opened, packet) = opening(key, value);
    reference::ending_rule(iface, opened, &packet)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sg_common::{SESSION_OPEN, addr::to_bytes};

    use super::*;
    use crate::{config, model::Addresses};

    const SECOND: u64 = 1_000_000_000;

    /// An outbound TCP session of 192.0.2.10:40000 to 198.51.100.1:443.
    fn entry(state: u8, ended: bool, last_seen_ns: u64) -> (CtKey, CtValue) {
        let (family, local) = to_bytes("192.0.2.10".parse().unwrap());
        let (_, remote) = to_bytes("198.51.100.1".parse().unwrap());
        let key = CtKey {
            ifindex: 1,
            local,
            remote,
            local_port: 40000,
            remote_port: 443,
            proto: TCP,
            family,
            _pad: [0; 2],
        };
        let value = CtValue {
            last_seen_ns,
            opened: Direction::Egress as u32,
            epoch: 0,
            state,
            fin: 0,
            ended: ended as u8,
            _pad: [0; sg_common::CT_VALUE_PAD],
        };
        (key, value)
    }

    #[test]
    fn each_state_lives_its_own_timeout_and_ended_ones_do_not_expire() {
        let t = SessionTimeouts::DEFAULT;
        let now = 10_000 * SECOND;
        #[rustfmt::skip]
        let cases = [
            (SESSION_HALF_OPEN,   false, 10 * SECOND,  true,  50,  "half-open"),
            (SESSION_HALF_OPEN,   false, 61 * SECOND,  false, 0,   "half-open"),
            (SESSION_ESTABLISHED, false, 61 * SECOND,  true,  849, "established"),
            (SESSION_CLOSED,      false, 5 * SECOND,   true,  5,   "closed"),
            (SESSION_CLOSED,      false, 11 * SECOND,  false, 0,   "closed"),
            (SESSION_OPEN,        false, 900 * SECOND, true,  10,  "open"),
            (SESSION_ESTABLISHED, true,  now,          false, 0,   "ended"),
        ];
        for (state, ended, idle, live, left, name) in cases {
            let (_, v) = entry(state, ended, now - idle);
            assert_eq!(is_live(&v, &t, now), live, "{name} idle {idle}");
            assert_eq!(expires_in_secs(&v, &t, now), left, "{name} idle {idle}");
            assert_eq!(state_name(&v), name);
        }
        // Stamped by another CPU after `now` was read: just seen.
        assert!(!t.expired(SESSION_HALF_OPEN, now + 1, now));
    }

    #[test]
    fn an_ended_session_is_ended_by_a_drop_rule_matching_its_opening_packet() {
        let toml = |rule: &str| {
            format!(
                "[[security_group]]\nid = \"sg-a\"\n{rule}\n[[interface]]\nname = \"lo\"\naddresses = [\"192.0.2.10\"]\nsecurity_groups = [\"sg-a\"]\n"
            )
        };
        let (key, value) = entry(SESSION_ESTABLISHED, true, 0);
        let (opened, packet) = opening(&key, &value);
        assert_eq!(opened, Direction::Egress);
        assert_eq!(
            (packet.src.to_string(), packet.dst_port, packet.tcp_flags),
            ("192.0.2.10".to_owned(), 443, TCP_SYN)
        );
        let drop = "  [[security_group.egress]]\n  id = \"no-https\"\n  policy = \"drop\"\n  ip_protocol = \"tcp\"\n  port_range = \"443/443\"\n  dest_cidr_ip = \"198.51.100.0/24\"";
        for (rule, ended) in [(drop, Some(("sg-a", "no-https"))), ("", None)] {
            let config = config::parse(Path::new("t.toml"), &toml(rule)).unwrap();
            let addresses = Addresses::resolve(&config, |_| Vec::new());
            let iface = Interface {
                config: &config,
                binding: &config.interfaces[0],
                addresses: &addresses,
            };
            let got = ended_by(&iface, &key, &value);
            let want = ended.map(|(g, r)| (g.to_owned(), r.to_owned()));
            assert_eq!(got, want);
        }
    }
}
