//! The seeds' tables and examples (`/work/shared/seeds/`, Alibaba Cloud ECS
//! security-group documentation in Japanese) checked against the reference
//! decision of SPEC §3 (`sg_daemon::reference`). Each test cites its seed
//! file and example, with the Japanese gist in one English line.
//!
//! Each test builds a ruleset in the columns of the seeds' rule tables
//! (`id policy priority protocol port-range object`; every rule has an
//! explicit id so that the deciding rule reads plainly) and checks a table
//! of rows `[iface:] in|out PACKET => VERDICT`; `common/mod.rs` describes
//! both notations.
//!
//! Addresses used throughout: the protected host's `eth0` is 10.0.0.5 and
//! 2001:db8::5 (its own addresses, instance mode), `eth1` is 10.0.0.6 and
//! 2001:db8::6; a remote client is 198.51.100.10 / 2001:db8:ff::10.

mod common;

use common::{Host, IN, OUT, Sessions, host, rejected, to_toml, with_verdict};
use ipnet::IpNet;
use sg_daemon::model::Peer;

// ---------------------------------------------------------------------
// Matching order (seed 003 「カスタムセキュリティグループルールの照合ポリシー」)
// ---------------------------------------------------------------------

/// seed 003, matching policy 1.a/1.b: the rules of all bound groups are
/// merged and sorted first by priority (smaller is stronger), then Drop
/// before Accept. SPEC §3.2: remaining ties keep binding order, then file
/// order; an omitted priority is 1.
#[test]
fn s003_merged_order_is_priority_then_drop_then_binding_then_file() {
    let h = host(&[
        "sg-a ingress a-accept-p1        accept 1   tcp 22/22     0.0.0.0/0",
        "sg-a ingress a-drop-p2          drop   2   all -1/-1     0.0.0.0/0",
        "sg-a ingress a-accept-p1-later  accept 1   tcp 80/80     0.0.0.0/0",
        "sg-a ingress a-accept-p100      accept 100 udp 53/53     0.0.0.0/0",
        "sg-b ingress b-accept-p2        accept 2   tcp 443/443   0.0.0.0/0",
        "sg-b ingress b-accept-default-p accept -   tcp 8080/8080 0.0.0.0/0",
        "sg-b ingress b-drop-p1          drop   1   tcp 22/22     203.0.113.0/24",
        "eth0: sg-a sg-b",
        "eth1: sg-b sg-a",
    ]);
    assert_eq!(
        h.order("eth0", IN),
        [
            "sg-b/b-drop-p1",
            "sg-a/a-accept-p1",
            "sg-a/a-accept-p1-later",
            "sg-b/b-accept-default-p",
            "sg-a/a-drop-p2",
            "sg-b/b-accept-p2",
            "sg-a/a-accept-p100",
        ]
    );
    assert_eq!(
        h.order("eth1", IN),
        [
            "sg-b/b-drop-p1",
            "sg-b/b-accept-default-p",
            "sg-a/a-accept-p1",
            "sg-a/a-accept-p1-later",
            "sg-a/a-drop-p2",
            "sg-b/b-accept-p2",
            "sg-a/a-accept-p100",
        ]
    );
    assert!(h.order("eth0", OUT).is_empty());
    h.check(&[
        // The order decides: 443 is dropped by a-drop-p2 before b-accept-p2.
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:443 => drop sg-a/a-drop-p2",
        "in tcp 203.0.113.9:50000   -> 10.0.0.5:22  => drop sg-b/b-drop-p1",
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:22  => accept sg-a/a-accept-p1",
    ]);
}

/// seed 003, components 「優先度」: 1..100, the smaller value is the higher
/// priority.
#[test]
fn s003_smaller_priority_value_wins() {
    let h = host(&[
        "sg-web ingress drop-ssh-p2   drop   2   tcp 22/22 0.0.0.0/0",
        "sg-web ingress ssh-office-p1 accept 1   tcp 22/22 198.51.100.0/24",
        "sg-web ingress http-p100     accept 100 tcp 80/80 0.0.0.0/0",
        "sg-web ingress drop-http-p99 drop   99  tcp 80/80 203.0.113.0/24",
        "eth0: sg-web",
    ]);
    h.check(&[
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:22 => accept sg-web/ssh-office-p1",
        "in tcp 203.0.113.9:50000   -> 10.0.0.5:22 => drop sg-web/drop-ssh-p2",
        "in tcp 203.0.113.9:50000   -> 10.0.0.5:80 => drop sg-web/drop-http-p99",
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept sg-web/http-p100",
    ]);
}

/// seed 003, matching policy 1.b and seed 002 「同じ優先度レベルでは、拒否
/// ルールが優先されます」: at the same priority a Drop rule beats an Accept
/// rule, whatever their file or group order.
#[test]
fn s003_drop_wins_over_accept_at_equal_priority() {
    let h = host(&[
        "sg-open ingress accept-ssh   accept 5 tcp 22/22 0.0.0.0/0",
        "sg-open ingress drop-bad-net drop   5 tcp 22/22 203.0.113.0/24",
        "sg-deny ingress deny-ssh-v6  drop   5 tcp 22/22 ::/0",
        "eth0: sg-open sg-deny",
    ]);
    h.check(&[
        "in tcp 203.0.113.9:50000   -> 10.0.0.5:22 => drop sg-open/drop-bad-net",
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:22 => accept sg-open/accept-ssh",
        // A drop of a later-bound group still comes before the accept.
        "in tcp [2001:db8:ff::10]:50000 -> [2001:db8::5]:22 => drop sg-deny/deny-ssh-v6",
    ]);
}

/// SPEC §3.2 (seed 003 matching policy only sorts by priority and action):
/// two matching rules of equal priority and action are taken in binding
/// order of their groups, then in file order within a group.
#[test]
fn s003_ties_are_broken_by_binding_order_then_file_order() {
    let h = host(&[
        "sg-a ingress a-ssh       accept 1 tcp 22/22 198.51.100.10",
        "sg-b ingress b-ssh       accept 1 tcp 22/22 0.0.0.0/0",
        "sg-b ingress b-ssh-again accept 1 tcp 20/30 198.51.100.0/24",
        "eth0: sg-a sg-b",
        "eth1: sg-b sg-a",
    ]);
    h.check(&[
        "eth0: in tcp 198.51.100.10:50000 -> 10.0.0.5:22 => accept sg-a/a-ssh",
        "eth1: in tcp 198.51.100.10:50000 -> 10.0.0.6:22 => accept sg-b/b-ssh",
        // File order inside sg-b: b-ssh before b-ssh-again.
        "eth0: in tcp 198.51.100.11:50000 -> 10.0.0.5:22 => accept sg-b/b-ssh",
    ]);
}

// ---------------------------------------------------------------------
// Seed 001: rule recipes
// ---------------------------------------------------------------------

/// seed 001 「webサービスを提供するwebサイト」: a group without rules denies
/// all inbound; accept TCP 80/80 and 443/443 from 0.0.0.0/0 at priority 1.
#[test]
fn s001_web_80_and_443_open_to_everyone() {
    let h = host(&[
        "sg-web ingress http  accept 1 tcp 80/80   0.0.0.0/0",
        "sg-web ingress https accept 1 tcp 443/443 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    h.check(&[
        "in tcp {198.51.100.10,203.0.113.200,8.8.8.8}:50000 -> 10.0.0.5:80  => accept sg-web/http",
        "in tcp {198.51.100.10,203.0.113.200,8.8.8.8}:50000 -> 10.0.0.5:443 => accept sg-web/https",
        "in tcp {198.51.100.10,203.0.113.200,8.8.8.8}:50000 -> 10.0.0.5:{22,8080,3389} => drop default",
        // 0.0.0.0/0 is IPv4 only; UDP 443 is not TCP 443.
        "in tcp [2001:db8:ff::10]:50000 -> [2001:db8::5]:80 => drop default",
        "in udp 198.51.100.10:50000 -> 10.0.0.5:443 => drop default",
    ]);
}

/// seed 001 「オンプレミスサーバーからインスタンスに接続する」 (Workbench
/// table): SSH 22/22 and RDP 3389/3389 only from 161.117.90.22/32.
#[test]
fn s001_ssh_and_rdp_from_one_address_only() {
    let h = host(&[
        "sg-admin ingress ssh-workbench accept 1 tcp 22/22     161.117.90.22/32",
        "sg-admin ingress rdp-workbench accept 1 tcp 3389/3389 161.117.90.22/32",
        "eth0: sg-admin",
    ]);
    h.check(&[
        "in tcp 161.117.90.22:50000 -> 10.0.0.5:22   => accept sg-admin/ssh-workbench",
        "in tcp 161.117.90.22:50000 -> 10.0.0.5:3389 => accept sg-admin/rdp-workbench",
        "in tcp {161.117.90.23,161.117.90.21,198.51.100.10}:50000 -> 10.0.0.5:{22,3389} => drop default",
        "in tcp 161.117.90.22:50000 -> 10.0.0.5:80   => drop default",
    ]);
}

/// seed 001 「異なるセキュリティグループ内のインスタンスが相互に通信」: groups
/// without rules are isolated from each other; group B authorises group A's
/// id on TCP 21/21 (FTP), which grants A's members' private IPs (seed 003
/// 「セキュリティグループ ID」). Members are A's listed `members` and the
/// addresses of local interfaces bound to A.
#[test]
fn s001_group_to_group_authorisation_by_source_group_id() {
    let h = host(&[
        "sg-a members=10.0.1.10",
        "sg-b ingress ftp-from-a accept 1 tcp 21/21 sg-a",
        "eth0: sg-b",
        "eth1: sg-a",
    ]);
    h.check(&[
        // A listed member, and eth1's own address (bound to sg-a)...
        "in tcp {10.0.1.10,10.0.0.6}:40000 -> 10.0.0.5:21 => accept sg-b/ftp-from-a",
        // ...only on the authorised port.
        "in tcp {10.0.1.10,10.0.0.6}:40000 -> 10.0.0.5:22 => drop default",
        "in tcp 10.0.1.11:40000 -> 10.0.0.5:21 => drop default",
        // The other way round nothing is authorised: sg-b's members do not
        // reach sg-a's interface, sg-a's members reach each other (basic group).
        "eth1: in tcp 10.0.0.5:40000  -> 10.0.0.6:21 => drop default",
        "eth1: in tcp 10.0.1.10:40000 -> 10.0.0.6:21 => accept intra-group",
    ]);
}

/// seed 001 「データベースへのアクセス」: 3306 from one address, 1521 from
/// another, 1433 from 192.168.0.0/16, 5432 from a group, 6379 from a group
/// (of another account; here simply another group).
#[test]
fn s001_database_ports_from_addresses_cidrs_and_app_groups() {
    let h = host(&[
        "sg-app members=10.0.2.10,10.0.2.11",
        "sg-app-other-account members=10.0.3.10",
        "sg-db                ingress mysql    accept 1 tcp 3306/3306 172.16.1.1",
        "sg-db                ingress oracle   accept 1 tcp 1521/1521 192.168.1.1",
        "sg-db                ingress mssql    accept 1 tcp 1433/1433 192.168.0.0/16",
        "sg-db                ingress postgres accept 1 tcp 5432/5432 sg-app",
        "sg-db                ingress redis    accept 1 tcp 6379/6379 sg-app-other-account",
        "eth0: sg-db",
    ]);
    h.check(&[
        "in tcp 172.16.1.1:40000    -> 10.0.0.5:3306 => accept sg-db/mysql",
        "in tcp 172.16.1.2:40000    -> 10.0.0.5:3306 => drop default",
        "in tcp 192.168.1.1:40000   -> 10.0.0.5:1521 => accept sg-db/oracle",
        "in tcp 192.168.1.2:40000   -> 10.0.0.5:1521 => drop default",
        "in tcp 192.168.200.7:40000 -> 10.0.0.5:1433 => accept sg-db/mssql",
        "in tcp 192.169.0.1:40000   -> 10.0.0.5:1433 => drop default",
        "in tcp 10.0.2.10:40000     -> 10.0.0.5:5432 => accept sg-db/postgres",
        "in tcp 10.0.2.11:40000     -> 10.0.0.5:5432 => accept sg-db/postgres",
        "in tcp 10.0.3.10:40000     -> 10.0.0.5:5432 => drop default",
        "in tcp 10.0.3.10:40000     -> 10.0.0.5:6379 => accept sg-db/redis",
        "in tcp 10.0.2.10:40000     -> 10.0.0.5:6379 => drop default",
        "in tcp 10.0.2.10:40000     -> 10.0.0.5:3306 => drop default",
    ]);
}

/// seed 001 「インスタンスのping」: accept all ICMP (IPv4) -1/-1 from
/// 0.0.0.0/0 and all ICMP (IPv6) -1/-1 from ::/0; the echo reply goes back
/// through the session. Seed 002 FAQ: without the ICMP rule ping fails.
#[test]
fn s001_ping_allowed_by_icmp_rules_v4_and_v6() {
    let h = host(&[
        "sg-ping    ingress ping-v4 accept 1 icmp   -1/-1 0.0.0.0/0",
        "sg-ping    ingress ping-v6 accept 1 icmpv6 -1/-1 ::/0",
        "sg-no-ping",
        "eth0: sg-ping",
        "eth1: sg-no-ping",
    ]);
    h.sequence(&[
        "in  ping 198.51.100.10 -> 10.0.0.5 id 77 => accept sg-ping/ping-v4",
        "out pong 10.0.0.5 -> 198.51.100.10 id 77 => accept session",
        "in  ping 2001:db8:ff::10 -> 2001:db8::5 id 78 => accept sg-ping/ping-v6",
        "out pong 2001:db8::5 -> 2001:db8:ff::10 id 78 => accept session",
    ]);
    h.check(&[
        "eth1: in ping 198.51.100.10 -> 10.0.0.6 id 77 => drop default",
        "eth1: in ping 2001:db8:ff::10 -> 2001:db8::6 id 77 => drop default",
    ]);
}

/// The whitelist of seed 001 「インスタンスから外部Webサイトへのアクセスを
/// 制限する」, with its drop-all at `drop_all_priority`.
fn whitelist(drop_all_priority: u8) -> Host {
    host(&[
        format!("sg-out egress drop-all drop {drop_all_priority} all -1/-1 0.0.0.0/0").as_str(),
        "sg-out egress allow-site-80  accept 1 tcp 80/80   47.96.0.1",
        "sg-out egress allow-site-443 accept 1 tcp 443/443 121.199.0.1",
        "eth0: sg-out",
    ])
}

/// seed 001 「インスタンスから外部Webサイトへのアクセスを制限する」: a basic
/// group allows all outbound by default; to whitelist, drop All -1/-1 to
/// 0.0.0.0/0 at priority 2 and accept TCP 80 / 443 to the sites at
/// priority 1; afterwards only those sites are reachable (also by ping).
#[test]
fn s001_egress_whitelist_with_priority_2_drop_all() {
    let h = whitelist(2);
    h.sequence(&[
        "out tcp 10.0.0.5:40000 -> 47.96.0.1:80 => accept sg-out/allow-site-80",
        "in  tcp 47.96.0.1:80 -> 10.0.0.5:40000 => accept session",
    ]);
    h.check(&[
        "out tcp 10.0.0.5:40001 -> 121.199.0.1:443   => accept sg-out/allow-site-443",
        "out tcp 10.0.0.5:40002 -> 47.96.0.1:443     => drop sg-out/drop-all",
        "out tcp 10.0.0.5:40003 -> 121.199.0.1:80    => drop sg-out/drop-all",
        "out tcp 10.0.0.5:40004 -> 93.184.216.34:80  => drop sg-out/drop-all",
        "out udp 10.0.0.5:40005 -> 8.8.8.8:53        => drop sg-out/drop-all",
        "out ping 10.0.0.5 -> 47.96.0.1 id 1         => drop sg-out/drop-all",
    ]);
}

/// seed 001, same recipe, note 2: at equal priority the drop rule wins, so
/// the drop-all must have a lower priority than the accepts — with both at
/// 1 nothing gets out.
#[test]
fn s001_egress_whitelist_fails_with_drop_all_at_the_same_priority() {
    whitelist(1).check(&[
        "out tcp 10.0.0.5:40000 -> 47.96.0.1:80    => drop sg-out/drop-all",
        "out tcp 10.0.0.5:40000 -> 121.199.0.1:443 => drop sg-out/drop-all",
    ]);
}

/// seed 001, same recipe, note 1: 「許可ルールが一致して適用されるまで、
/// セッションは確立されません」 — no session until an accept rule applies,
/// so a dropped request gets no reply through.
#[test]
fn s001_no_session_until_an_accept_rule_applies() {
    whitelist(2).sequence(&[
        "out tcp 10.0.0.5:40000 -> 93.184.216.34:443 => drop sg-out/drop-all",
        "in  tcp 93.184.216.34:443 -> 10.0.0.5:40000 => drop default",
    ]);
}

// ---------------------------------------------------------------------
// Seed 000 / 002 / 004: using groups
// ---------------------------------------------------------------------

/// seed 000 FAQ 2: the gateway's group was authorised on 8080 only; when the
/// service moves to 8081 access fails — authorise a wider range such as
/// 1/65535 (several port ranges may be given).
#[test]
fn s000_gateway_group_authorised_on_port_ranges() {
    let h = host(&[
        "sg-gateway members=10.0.9.1,10.0.9.2",
        "sg-backend      ingress gw-8080      accept 1 tcp 8080/8080 sg-gateway",
        "sg-backend      ingress gw-9000-9100 accept 1 tcp 9000/9100 sg-gateway",
        "sg-backend-wide ingress gw-all-ports accept 1 tcp 1/65535   sg-gateway",
        "eth0: sg-backend",
        "eth1: sg-backend-wide",
    ]);
    h.check(&[
        "in tcp 10.0.9.1:40000 -> 10.0.0.5:8080 => accept sg-backend/gw-8080",
        "in tcp 10.0.9.2:40000 -> 10.0.0.5:9050 => accept sg-backend/gw-9000-9100",
        "in tcp 10.0.9.1:40000 -> 10.0.0.5:8081 => drop default",
        "eth1: in tcp 10.0.9.1:40000 -> 10.0.0.6:{1,8081,65535} => accept sg-backend-wide/gw-all-ports",
        "eth1: in tcp 198.51.100.10:40000 -> 10.0.0.6:8081 => drop default",
    ]);
}

/// seed 002 introduction (figure): inbound SSH 22 only from one address
/// (121.XX.XX.XX); outbound to a known high-risk address denied.
#[test]
fn s002_intro_admin_ssh_and_blocked_risky_destination() {
    let h = host(&[
        "sg-intro ingress ssh-admin  accept 1 tcp 22/22 121.40.0.1",
        "sg-intro egress  deny-risky drop   1 all -1/-1 203.0.113.66",
        "eth0: sg-intro",
    ]);
    h.check(&[
        "in  tcp 121.40.0.1:50000 -> 10.0.0.5:22 => accept sg-intro/ssh-admin",
        "in  tcp 121.40.0.2:50000 -> 10.0.0.5:22 => drop default",
        "out tcp 10.0.0.5:40000 -> 203.0.113.66:443 => drop sg-intro/deny-risky",
        "out udp 10.0.0.5:40000 -> 203.0.113.66:53  => drop sg-intro/deny-risky",
        "out tcp 10.0.0.5:40000 -> 203.0.113.67:443 => accept default",
    ]);
}

/// seed 002 「セキュリティグループの作成」 (API) and seed 003: a new basic
/// group without rules accepts traffic from other instances of the same
/// group, drops all other inbound and accepts all outbound.
#[test]
fn s002_basic_group_hidden_defaults() {
    let h = host(&[
        "sg-new members=10.0.0.20,2001:db8::20",
        "eth0: sg-new",
        "eth1: sg-new",
    ]);
    h.check(&[
        // Members: listed ones and the other local interface bound to it.
        "in tcp {10.0.0.20,10.0.0.6}:40000 -> 10.0.0.5:22 => accept intra-group",
        "in udp [{2001:db8::20,2001:db8::6}]:40000 -> [2001:db8::5]:53 => accept intra-group",
        "in ping 10.0.0.20 -> 10.0.0.5 id 1 => accept intra-group",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:22 => drop default",
        "in tcp [2001:db8:ff::10]:40000 -> [2001:db8::5]:22 => drop default",
        "in tcp 10.0.0.21:40000 -> 10.0.0.5:22 => drop default",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 => accept default",
        "out udp [2001:db8::5]:40000 -> [2001:db8:ff::10]:53 => accept default",
        "out ping 10.0.0.5 -> 8.8.8.8 id 1 => accept default",
        "out proto 47 10.0.0.5 -> 198.51.100.10 => accept default",
    ]);
}

/// seed 002 「セキュリティグループ内のインスタンス間のネットワーク通信」: the
/// intra-group policy can be set to internal isolation, which forbids
/// member-to-member traffic; even then, rules can allow it.
#[test]
fn s002_internal_isolation_and_rules_that_still_allow_members() {
    let h = host(&[
        "sg-iso inner_access_policy=drop members=10.0.0.20",
        "sg-iso-with-rule inner_access_policy=drop members=10.0.0.30",
        "sg-iso-with-rule ingress members-https accept 1 tcp 443/443 sg-iso-with-rule",
        "eth0: sg-iso",
        "eth1: sg-iso-with-rule",
    ]);
    h.check(&[
        "in tcp 10.0.0.20:40000 -> 10.0.0.5:22 => drop default",
        // Outbound stays allowed (SPEC §3.4: all outbound of basic groups).
        "out tcp 10.0.0.5:40000 -> 10.0.0.20:22 => accept default",
        "eth1: in tcp 10.0.0.30:40000 -> 10.0.0.6:443 => accept sg-iso-with-rule/members-https",
        "eth1: in tcp 10.0.0.30:40000 -> 10.0.0.6:22  => drop default",
    ]);
}

/// seed 002, same section: when an instance is in several groups, it can
/// talk to members if ANY of the groups' intra-group policy allows it.
#[test]
fn s002_any_bound_group_that_grants_intra_group_access_grants_it() {
    let h = host(&[
        "sg-iso inner_access_policy=drop members=10.0.0.20,10.0.0.21",
        "sg-open inner_access_policy=accept members=10.0.0.20,10.0.0.22",
        "eth0: sg-iso sg-open",
        "eth1: sg-iso",
    ]);
    h.check(&[
        // Member of both, and member of the accepting group only.
        "in tcp {10.0.0.20,10.0.0.22}:40000 -> 10.0.0.5:22 => accept intra-group",
        // Member of the isolated group only.
        "in tcp 10.0.0.21:40000 -> 10.0.0.5:22 => drop default",
        // eth1 is only in the isolated group: even a member of both is dropped.
        "eth1: in tcp 10.0.0.20:40000 -> 10.0.0.6:22 => drop default",
    ]);
}

/// seed 002 「インスタンスへのセキュリティグループの関連付け」 and 「ルールの
/// 優先度競合」: the rules of several groups on one NIC are merged and applied
/// by priority; a stronger drop of one group overrides a weaker accept of
/// another, and the other groups' rules keep applying.
#[test]
fn s002_several_groups_on_one_interface_are_merged() {
    let h = host(&[
        "sg-web      ingress http          accept 1  tcp 80/80     0.0.0.0/0",
        "sg-web      ingress mysql-anyone  accept 10 tcp 3306/3306 0.0.0.0/0",
        "sg-baseline ingress ssh-admin     accept 1  tcp 22/22     203.0.113.5",
        "sg-baseline ingress no-mysql      drop   5  tcp 3306/3306 0.0.0.0/0",
        "sg-baseline egress  no-telnet-out drop   1  tcp 23/23     0.0.0.0/0",
        "eth0: sg-web sg-baseline",
    ]);
    h.check(&[
        "in  tcp 198.51.100.10:40000 -> 10.0.0.5:80   => accept sg-web/http",
        "in  tcp 203.0.113.5:40000   -> 10.0.0.5:22   => accept sg-baseline/ssh-admin",
        "in  tcp 198.51.100.10:40000 -> 10.0.0.5:3306 => drop sg-baseline/no-mysql",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:23   => drop sg-baseline/no-telnet-out",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:22   => accept default",
    ]);
}

/// seed 002 FAQ 「すべて拒否に設定した後、内部の Alibaba Cloud サービス
/// からのアクセスを許可する」: after denying everything, allow inbound from
/// 100.64.0.0/10 (health checks).
#[test]
fn s002_allow_internal_services_after_deny_all() {
    let h = host(&[
        "sg-locked ingress deny-all        drop   100 all -1/-1 0.0.0.0/0",
        "sg-locked ingress aliyun-internal accept 1   all -1/-1 100.64.0.0/10",
        "eth0: sg-locked",
    ]);
    h.check(&[
        "in tcp {100.64.0.1,100.100.0.5,100.127.255.254}:40000 -> 10.0.0.5:22 => accept sg-locked/aliyun-internal",
        "in ping {100.64.0.1,100.100.0.5,100.127.255.254} -> 10.0.0.5 id 9 => accept sg-locked/aliyun-internal",
        "in tcp {100.128.0.1,198.51.100.10}:40000 -> 10.0.0.5:22 => drop sg-locked/deny-all",
    ]);
}

/// seed 002 「プレフィックスリストの使用」 and seed 003 「プレフィックスリスト
/// ID」: a rule authorising a prefix list (SourcePrefixListId /
/// DestPrefixListId) matches any of its CIDRs, IPv4 or IPv6.
#[test]
fn s002_prefix_list_rules_match_any_entry() {
    let h = host(&[
        "prefix_list pl-office 10 203.0.113.0/24 2001:db8:1::/48 192.0.2.7",
        "sg-office ingress ssh-office   accept 1 tcp 22/22   pl-office",
        "sg-office egress  https-office accept 1 tcp 443/443 pl-office",
        "sg-office egress  drop-v4      drop   2 all -1/-1   0.0.0.0/0",
        "sg-office egress  drop-v6      drop   2 all -1/-1   ::/0",
        "eth0: sg-office",
    ]);
    h.check(&[
        "in  tcp {203.0.113.9,192.0.2.7}:40000 -> 10.0.0.5:22 => accept sg-office/ssh-office",
        "in  tcp [2001:db8:1:2::9]:40000 -> [2001:db8::5]:22 => accept sg-office/ssh-office",
        "out tcp 10.0.0.5:40000 -> {203.0.113.9,192.0.2.7}:443 => accept sg-office/https-office",
        "out tcp [2001:db8::5]:40000 -> [2001:db8:1:2::9]:443 => accept sg-office/https-office",
        "in  tcp {192.0.2.8,198.51.100.10}:40000 -> 10.0.0.5:22 => drop default",
        "in  tcp [2001:db8:2::9]:40000 -> [2001:db8::5]:22 => drop default",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 => drop sg-office/drop-v4",
        "out tcp [2001:db8::5]:40000 -> [2001:db8:2::9]:443 => drop sg-office/drop-v6",
    ]);
}

/// seed 002 「制限事項」 and 「異なるセキュリティグループ内のインスタンス間」,
/// seed 004: enterprise groups cannot authorise groups, have no intra-group
/// policy, and one NIC uses one group type only.
#[test]
fn s002_enterprise_group_restrictions_are_rejected() {
    let e = rejected(&[
        "sg-app",
        "sg-ent type=enterprise",
        "sg-ent ingress from-app accept 1 tcp 22/22 sg-app",
    ]);
    assert!(e.contains("source_group_id"), "{e}");
    let e = rejected(&["sg-ent type=enterprise inner_access_policy=accept"]);
    assert!(e.contains("inner_access_policy"), "{e}");
    let e = rejected(&[
        "sg-basic",
        "sg-ent type=enterprise",
        "eth0: sg-basic sg-ent",
    ]);
    assert!(e.contains("security_groups"), "{e}");
}

// ---------------------------------------------------------------------
// Seed 003 / 004: defaults, components, built-ins, 5-tuple rules
// ---------------------------------------------------------------------

/// seed 003 (hidden default rules) and seed 004 (advanced groups): an
/// enterprise group drops inbound and outbound by default and has no
/// intra-group communication; accepted traffic still has its session.
#[test]
fn s003_enterprise_defaults_drop_both_ways_without_intra_group() {
    let h = host(&[
        "sg-ent type=enterprise members=10.0.0.20",
        "sg-ent-https type=enterprise",
        "sg-ent-https egress  https-out accept 1 tcp 443/443 0.0.0.0/0",
        "eth0: sg-ent",
        "eth1: sg-ent sg-ent-https",
    ]);
    h.check(&[
        "in  tcp {10.0.0.20,10.0.0.6,198.51.100.10}:40000 -> 10.0.0.5:22 => drop default",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 => drop default",
        "out tcp 10.0.0.5:40000 -> 10.0.0.20:22 => drop default",
        "out udp [2001:db8::5]:40000 -> [2001:db8:ff::10]:53 => drop default",
        "out ping 10.0.0.5 -> 198.51.100.10 id 1 => drop default",
    ]);
    h.sequence(&[
        "eth1: out tcp 10.0.0.6:40000 -> 198.51.100.10:443 => accept sg-ent-https/https-out",
        "eth1: in  tcp 198.51.100.10:443 -> 10.0.0.6:40000 => accept session",
        "eth1: out tcp 10.0.0.6:40000 -> 198.51.100.10:80  => drop default",
    ]);
}

/// The protocol rules of seed 003 「プロトコルタイプ」, with the protocols
/// written `[tcp, udp, icmp, icmpv6, gre]` (names or numbers).
fn protocols([tcp, udp, icmp, icmpv6, gre]: [&str; 5]) -> [String; 7] {
    [
        "sg-proto type=enterprise".to_owned(),
        format!("sg-proto ingress p6  accept 1 {tcp}    22/22 0.0.0.0/0"),
        format!("sg-proto ingress p17 accept 1 {udp}    53/53 0.0.0.0/0"),
        format!("sg-proto ingress p1  accept 1 {icmp}   -1/-1 0.0.0.0/0"),
        format!("sg-proto ingress p58 accept 1 {icmpv6} -1/-1 ::/0"),
        format!("sg-proto ingress p47 accept 1 {gre}    -1/-1 0.0.0.0/0"),
        "eth0: sg-proto".to_owned(),
    ]
}

/// seed 003 「プロトコルタイプ」: a protocol is a name (TCP, UDP, ICMP (IPv4),
/// ICMP (IPv6), GRE) or an IANA number 0..255; a number is the same as its
/// name: TCP 6, UDP 17, ICMP 1, ICMPv6 58, GRE 47.
#[test]
fn s003_protocols_by_number_are_the_same_as_by_name() {
    let by_number = protocols(["6", "17", "1", "58", "47"]);
    let by_name = protocols(["tcp", "udp", "icmp", "icmpv6", "gre"]);
    assert!(!to_toml(&by_number).contains("\"gre\""));
    assert!(to_toml(&by_number).contains("ip_protocol = 47,"));
    let (by_number, by_name) = (host(&by_number), host(&by_name));
    assert_eq!(by_number.config.groups, by_name.config.groups);
    for h in [&by_number, &by_name] {
        h.check(&[
            "in tcp 198.51.100.10:40000 -> 10.0.0.5:22 => accept sg-proto/p6",
            "in udp 198.51.100.10:40000 -> 10.0.0.5:53 => accept sg-proto/p17",
            "in ping 198.51.100.10 -> 10.0.0.5 id 5 => accept sg-proto/p1",
            "in ping 2001:db8:ff::10 -> 2001:db8::5 id 5 => accept sg-proto/p58",
            "in proto 47 198.51.100.10 -> 10.0.0.5 => accept sg-proto/p47",
            "in tcp 198.51.100.10:40000 -> 10.0.0.5:53 => drop default",
            "in udp 198.51.100.10:40000 -> 10.0.0.5:22 => drop default",
            "in proto 47 2001:db8:ff::10 -> 2001:db8::5 => drop default",
            "in proto 132 198.51.100.10 -> 10.0.0.5 => drop default",
        ]);
    }
}

/// seed 003 「プロトコルタイプ」 and seed 001 (protocol type "All"): `all`
/// matches every protocol; a bare number without a name (132, SCTP) matches
/// that protocol only.
#[test]
fn s003_protocol_all_and_bare_numbers() {
    let h = host(&[
        "sg-all ingress office-everything accept 1 all -1/-1 203.0.113.0/24",
        "sg-all ingress sctp              accept 1 132 -1/-1 0.0.0.0/0",
        "sg-all ingress drop-all          drop   2 all -1/-1 0.0.0.0/0",
        "eth0: sg-all",
    ]);
    h.check(&[
        "in tcp 203.0.113.9:40000 -> 10.0.0.5:22    => accept sg-all/office-everything",
        "in udp 203.0.113.9:40000 -> 10.0.0.5:65535 => accept sg-all/office-everything",
        "in ping 203.0.113.9 -> 10.0.0.5 id 1       => accept sg-all/office-everything",
        "in proto {47,0,255} 203.0.113.9 -> 10.0.0.5 => accept sg-all/office-everything",
        "in proto 132 198.51.100.10 -> 10.0.0.5      => accept sg-all/sctp",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:22   => drop sg-all/drop-all",
        "in ping 198.51.100.10 -> 10.0.0.5 id 1      => drop sg-all/drop-all",
        "in proto 133 198.51.100.10 -> 10.0.0.5      => drop sg-all/drop-all",
    ]);
}

/// seed 003 「ポート範囲」: TCP/UDP take "start/end" such as 8000/9000 or
/// 22/22 (the destination port); every other protocol takes -1/-1, which
/// matches all its traffic.
#[test]
fn s003_port_ranges_match_destination_ports_inclusively() {
    let h = host(&[
        "sg-ports type=enterprise",
        "sg-ports ingress tcp-8000-9000 accept 1 tcp 8000/9000 0.0.0.0/0",
        "sg-ports ingress udp-22        accept 1 udp 22/22     0.0.0.0/0",
        "sg-ports ingress gre-any       accept 1 gre -1/-1     0.0.0.0/0",
        "eth0: sg-ports",
    ]);
    h.check(&[
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:{7999,9001} => drop default",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:{8000,8500,9000} => accept sg-ports/tcp-8000-9000",
        // The source port is not what a port range looks at.
        "in tcp 198.51.100.10:8500 -> 10.0.0.5:40000 => drop default",
        "in udp 198.51.100.10:40000 -> 10.0.0.5:8500 => drop default",
        "in udp 198.51.100.10:40000 -> 10.0.0.5:22   => accept sg-ports/udp-22",
        "in udp 198.51.100.10:40000 -> 10.0.0.5:23   => drop default",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:22   => drop default",
        "in proto 47 198.51.100.10 -> 10.0.0.5       => accept sg-ports/gre-any",
    ]);
}

/// seed 003 「ポートリスト」: a port list instead of a single range (TCP or UDP
/// only); the rule matches any of its entries.
#[test]
fn s003_port_list_rules_match_any_entry() {
    let h = host(&[
        "port_list prl-web 5 80/80 443/443 8000/8080",
        "sg-web ingress web-ports     accept 1 tcp prl-web 0.0.0.0/0",
        "sg-web ingress web-ports-udp accept 1 udp prl-web ::/0",
        "eth0: sg-web",
    ]);
    h.check(&[
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:{80,443,8000,8042,8080} => accept sg-web/web-ports",
        "in udp [2001:db8:ff::10]:40000 -> [2001:db8::5]:{80,443,8000,8042,8080} => accept sg-web/web-ports-udp",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:{79,81,442,7999,8081} => drop default",
        "in udp 198.51.100.10:40000 -> 10.0.0.5:80 => drop default",
    ]);
}

/// seed 003 「IPv6 アドレス / IPv6 CIDR ブロック」: addresses and CIDRs are
/// normalised (2408:180:0000::1 is 2408:180::1, 2408:4321:180:0000::/64 is
/// 2408:4321:180::/64) and match the normalised packet addresses.
#[test]
fn s003_ipv6_authorisation_objects_are_normalised() {
    let h = host(&[
        "sg-v6 ingress v6-host accept 1 tcp 22/22   2408:180:0000::1",
        "sg-v6 ingress v6-net  accept 1 tcp 80/80   2408:4321:180:0000::/64",
        "sg-v6 ingress v6-long accept 1 tcp 443/443 2408:4321:180:1701:94c7:bc38:3bfa:9",
        "eth0: sg-v6",
    ]);
    let ingress = &h.config.groups[0].ingress;
    let net = |s: &str| Peer::Cidrs(vec![s.parse::<IpNet>().unwrap()]);
    assert_eq!(ingress[0].peer, net("2408:180::1/128"));
    assert_eq!(ingress[1].peer, net("2408:4321:180::/64"));
    h.check(&[
        "in tcp [2408:180::1]:40000 -> [2001:db8::5]:22 => accept sg-v6/v6-host",
        "in tcp [2408:180:0:0:0:0:0:1]:40000 -> [2001:db8::5]:22 => accept sg-v6/v6-host",
        "in tcp [2408:180::2]:40000 -> [2001:db8::5]:22 => drop default",
        "in tcp [2408:4321:180::9]:40000 -> [2001:db8::5]:80 => accept sg-v6/v6-net",
        "in tcp [2408:4321:180:1::9]:40000 -> [2001:db8::5]:80 => drop default",
        "in tcp [2408:4321:180:1701:94c7:bc38:3bfa:9]:40000 -> [2001:db8::5]:443 => accept sg-v6/v6-long",
    ]);
}

/// seed 003 「権限付与オブジェクト」 (IPv4 and IPv6 addresses and CIDRs) and
/// seed 001 (ping table: one rule for IPv4 0.0.0.0/0, another for IPv6
/// ::/0): an IPv4 object never matches IPv6 traffic and vice versa.
#[test]
fn s003_ipv4_objects_do_not_match_ipv6_traffic_and_vice_versa() {
    let h = host(&[
        "sg-mixed ingress http-v4     accept 1 tcp 80/80 0.0.0.0/0",
        "sg-mixed ingress ssh-v6      accept 1 tcp 22/22 ::/0",
        "sg-mixed egress  drop-all-v4 drop   1 all -1/-1 0.0.0.0/0",
        "eth0: sg-mixed",
    ]);
    h.check(&[
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:80 => accept sg-mixed/http-v4",
        "in tcp [2001:db8:ff::10]:40000 -> [2001:db8::5]:80 => drop default",
        "in tcp [2001:db8:ff::10]:40000 -> [2001:db8::5]:22 => accept sg-mixed/ssh-v6",
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:22 => drop default",
        // A v4 drop-all leaves v6 outbound to the basic default.
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 => drop sg-mixed/drop-all-v4",
        "out tcp [2001:db8::5]:40000 -> [2001:db8:ff::10]:443 => accept default",
    ]);
}

/// seed 003 「MetaServer へのアクセス」: outbound to the metadata service
/// 100.100.100.200 is allowed by default and cannot be blocked by rules;
/// SPEC §3.7: and its replies.
#[test]
fn s003_metadata_service_is_reachable_despite_drop_all_egress() {
    let h = host(&[
        "sg-locked egress  drop-all-out  drop 1 all -1/-1 0.0.0.0/0",
        "sg-locked egress  drop-metadata drop 1 tcp 80/80 100.100.100.200/32",
        "sg-ent type=enterprise",
        "eth0: sg-locked",
        "eth1: sg-ent",
    ]);
    h.sequence(&[
        "out tcp 10.0.0.5:40000 -> 100.100.100.200:80 => accept built-in metadata",
        "in  tcp 100.100.100.200:80 -> 10.0.0.5:40000 => accept session",
        "out tcp 10.0.0.5:40000 -> 100.100.100.200:80 => accept session",
    ]);
    h.check(&[
        // Any protocol to the metadata address; only that address.
        "out udp 10.0.0.5:40001 -> 100.100.100.200:53 => accept built-in metadata",
        "out tcp 10.0.0.5:40000 -> 100.100.100.201:80 => drop sg-locked/drop-all-out",
        // Without a session the metadata service cannot call in.
        "in  tcp 100.100.100.200:80 -> 10.0.0.5:40002 => drop default",
    ]);
    // The same in an enterprise group (everything dropped by default).
    h.sequence(&[
        "eth1: out tcp 10.0.0.6:40000 -> 100.100.100.200:80 => accept built-in metadata",
        "eth1: in  tcp 100.100.100.200:80 -> 10.0.0.6:40000 => accept session",
    ]);
}

/// seed 003 「ICMP (PMTUD エラーメッセージ)」: the ICMP error carrying the path
/// MTU (IPv4 type 3 code 4; SPEC §3.7: ICMPv6 type 2) is let in by default,
/// from any address; other ICMP errors are not built-in.
#[test]
fn s003_pmtud_messages_are_let_in_from_anyone() {
    let h = host(&[
        "sg-ent type=enterprise",
        "sg-deny ingress deny-all-v4 drop 1 all -1/-1 0.0.0.0/0",
        "sg-deny ingress deny-all-v6 drop 1 all -1/-1 ::/0",
        "eth0: sg-ent",
        "eth1: sg-deny",
    ]);
    h.check(&[
        "in icmp 203.0.113.1 -> 10.0.0.5 3/4 => accept built-in pmtud",
        "in icmp 2001:db8:ff::1 -> 2001:db8::5 2/0 => accept built-in pmtud",
        "eth1: in icmp 203.0.113.1 -> 10.0.0.6 3/4 => accept built-in pmtud",
        "eth1: in icmp 2001:db8:ff::1 -> 2001:db8::6 2/0 => accept built-in pmtud",
        // Port unreachable, time exceeded, ICMPv6 unreachable: rules decide.
        "in icmp 203.0.113.1 -> 10.0.0.5 {3/3,3/1,11/0} => drop default",
        "in icmp 2001:db8:ff::1 -> 2001:db8::5 1/4 => drop default",
        "eth1: in icmp 203.0.113.1 -> 10.0.0.6 3/3 => drop sg-deny/deny-all-v4",
    ]);
}

/// SPEC §3.7 (the host stays on the network; seeds silent beyond "some
/// traffic is allowed by default"): IPv6 neighbour and router discovery,
/// MLD and DHCP / DHCPv6 client exchanges pass an enterprise group with no
/// rules; an operator can turn both off. Redirects pass only when switched
/// on.
#[test]
fn spec_3_7_neighbour_discovery_and_dhcp_client_are_built_in() {
    let ent = ["sg-ent type=enterprise", "eth0: sg-ent"];
    let built_in = [
        // router solicitation, router advertisement, neighbour
        // solicitation, neighbour advertisement
        "out icmp fe80::5 -> ff02::2 133/0 => accept built-in neighbor-discovery",
        "in  icmp fe80::1 -> ff02::1 134/0 => accept built-in neighbor-discovery",
        "in  icmp fe80::1 -> ff02::1:ff00:5 135/0 => accept built-in neighbor-discovery",
        "out icmp fe80::5 -> fe80::1 136/0 => accept built-in neighbor-discovery",
        "out icmp 2001:db8::5 -> ff02::1:ff00:1 135/0 => accept built-in neighbor-discovery",
        "in  icmp 2001:db8::1 -> 2001:db8::5 136/0 => accept built-in neighbor-discovery",
        // MLD query, report, done; MLDv2 report (snooping switches).
        "in  icmp fe80::1 -> ff02::1 130/0 => accept built-in neighbor-discovery",
        "out icmp fe80::5 -> ff02::1:ff00:5 131/0 => accept built-in neighbor-discovery",
        "out icmp fe80::5 -> ff02::2 132/0 => accept built-in neighbor-discovery",
        "out icmp :: -> ff02::16 143/0 => accept built-in neighbor-discovery",
        "out udp 0.0.0.0:68 -> 255.255.255.255:67 => accept built-in dhcp-client",
        "in  udp 10.0.0.1:67 -> 255.255.255.255:68 => accept built-in dhcp-client",
        "in  udp 10.0.0.1:67 -> 10.0.0.5:68 => accept built-in dhcp-client",
        "out udp [fe80::5]:546 -> [ff02::1:2]:547 => accept built-in dhcp-client",
        "in  udp [fe80::1]:547 -> [fe80::5]:546 => accept built-in dhcp-client",
    ];
    let h = host(&ent);
    h.check(&built_in);
    h.check(&[
        // Not built-in: a DHCP server role, ICMPv6 echo, ICMPv4 type 134.
        "in  udp 198.51.100.10:68 -> 10.0.0.5:67 => drop default",
        "out udp 10.0.0.5:67 -> 198.51.100.10:68 => drop default",
        "in  ping 2001:db8:ff::10 -> 2001:db8::5 id 1 => drop default",
        "in  icmp 198.51.100.10 -> 10.0.0.5 134/0 => drop default",
        // Redirects are off by default; node information is not ND.
        "{in,out} icmp fe80::1 -> fe80::5 137/0 => drop default",
        "in  icmp fe80::1 -> fe80::5 139/0 => drop default",
    ]);
    let daemon = "daemon builtin_neighbor_discovery=false builtin_dhcp_client=false";
    let off = host(&[&ent[..], &[daemon]].concat());
    off.check(&with_verdict(&built_in, "drop default"));
    let redirects = host(&[&ent[..], &["daemon builtin_nd_redirects=true"]].concat());
    redirects
        .check(&["{in,out} icmp fe80::1 -> fe80::5 137/0 => accept built-in neighbor-discovery"]);
}

/// seed 003 (notes) and seed 002 「パブリックアクセスポート」: TCP port 25 is
/// restricted by default (send mail on 465 instead), even with an accept
/// rule; SPEC §3.8: switchable per host (`block_smtp_egress = false`).
#[test]
fn s003_outbound_port_25_is_blocked_and_465_is_not() {
    let smtp = [
        "sg-mail ingress smtp-in   accept 1 tcp 25/25   0.0.0.0/0",
        "sg-mail egress  smtp-out  accept 1 tcp 25/25   0.0.0.0/0",
        "sg-mail egress  smtps-out accept 1 tcp 465/465 0.0.0.0/0",
        "eth0: sg-mail",
    ];
    let h = host(&smtp);
    h.check(&[
        "out tcp 10.0.0.5:40000 -> 192.0.2.25:25 => drop built-in smtp-blocked",
        "out tcp [2001:db8::5]:40000 -> [2001:db8:25::25]:25 => drop built-in smtp-blocked",
        "out tcp 10.0.0.5:40000 -> 192.0.2.25:465 => accept sg-mail/smtps-out",
        // UDP 25 and TCP from local port 25 are not the restriction.
        "out udp 10.0.0.5:40000 -> 192.0.2.25:25 => accept default",
    ]);
    // Receiving mail on 25 works, replies go out through the session.
    h.sequence(&[
        "in  tcp 192.0.2.25:40000 -> 10.0.0.5:25 => accept sg-mail/smtp-in",
        "out tcp 10.0.0.5:25 -> 192.0.2.25:40000 => accept session",
    ]);
    let open = host(&[&smtp[..], &["daemon block_smtp_egress=false"]].concat());
    open.check(&["out tcp 10.0.0.5:40000 -> 192.0.2.25:25 => accept sg-mail/smtp-out"]);
}

/// seed 003 「セキュリティグループクインテットルール」 example: an outbound
/// 5-tuple rule — source 172.16.1.0/32, source port 22, destination
/// 10.0.0.1/32, any destination port, TCP.
#[test]
fn s003_five_tuple_egress_rule_of_the_example() {
    let h = host(&[
        "sg-5t type=enterprise",
        "sg-5t egress ssh-replies-to-jump accept 1 tcp 1/65535 10.0.0.1/32 source_port_range=22/22 source_cidr_ip=172.16.1.0/32",
        "eth0: sg-5t addresses=172.16.1.0,172.16.1.1",
    ]);
    h.check(&[
        "out tcp 172.16.1.0:22 -> 10.0.0.1:{1,51000,65535} => accept sg-5t/ssh-replies-to-jump",
        "out tcp 172.16.1.0:2222 -> 10.0.0.1:51000 => drop default", // other source port
        "out tcp 172.16.1.1:22 -> 10.0.0.1:51000 => drop default",   // other local address
        "out tcp 172.16.1.0:22 -> 10.0.0.2:51000 => drop default",   // other destination
        "out udp 172.16.1.0:22 -> 10.0.0.1:51000 => drop default",   // other protocol
    ]);
}

/// seed 003 「セキュリティグループクインテットルール」: in an inbound 5-tuple
/// rule the destination IP selects one instance address (a private IP),
/// and a source port can be given.
#[test]
fn s003_five_tuple_ingress_rules_with_local_address_and_source_port() {
    let h = host(&[
        "sg-5t-in ingress web-on-5 accept 1 tcp 80/80 0.0.0.0/0 dest_cidr_ip=10.0.0.5",
        "sg-5t-in ingress from-dns-port accept 1 udp 1/65535 192.0.2.53 source_port_range=53/53",
        "eth0: sg-5t-in addresses=10.0.0.5,10.0.0.7",
    ]);
    h.check(&[
        "in tcp 198.51.100.10:40000 -> 10.0.0.5:80 => accept sg-5t-in/web-on-5",
        "in tcp 198.51.100.10:40000 -> 10.0.0.7:80 => drop default",
        "in udp 192.0.2.53:53 -> 10.0.0.7:40000 => accept sg-5t-in/from-dns-port",
        "in udp 192.0.2.53:54 -> 10.0.0.7:40000 => drop default",
        "in udp 192.0.2.54:53 -> 10.0.0.7:40000 => drop default",
    ]);
}

// ---------------------------------------------------------------------
// Stateful behaviour (seed 003 notes, SPEC §3.5 and §3.6)
// ---------------------------------------------------------------------

/// seed 003 notes 「セキュリティグループはステートフルです」 (sessions live up
/// to 910 s) and seed 002 「インバウンドルールを設定するだけで…応答トラフィ
/// ックを自動的に許可」: once a packet is accepted every later packet of its
/// session passes both ways; unsolicited inbound does not.
#[test]
fn s003_stateful_replies_pass_without_rules() {
    let h = host(&[
        "sg-web ingress http         accept 1 tcp 80/80   0.0.0.0/0",
        "sg-web egress  drop-all-out drop   2 all -1/-1   0.0.0.0/0",
        "sg-web egress  https-out    accept 1 tcp 443/443 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    assert_eq!(h.config.daemon.session_timeout_secs, 910);
    h.sequence(&[
        // Outbound request, its reply, more of the same session.
        "out tcp 10.0.0.5:40000 -> 192.0.2.80:443 => accept sg-web/https-out",
        "in  tcp 192.0.2.80:443 -> 10.0.0.5:40000 => accept session",
        "out tcp 10.0.0.5:40000 -> 192.0.2.80:443 => accept session",
        // Unsolicited inbound: another local port, another remote port.
        "in  tcp 192.0.2.80:443 -> 10.0.0.5:40001 => drop default",
        "in  tcp 192.0.2.80:444 -> 10.0.0.5:40000 => drop default",
        "in  udp 192.0.2.80:443 -> 10.0.0.5:40000 => drop default",
        // Inbound accepted: its replies go out despite the egress drop-all.
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept sg-web/http",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 => accept session",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50001 => drop sg-web/drop-all-out",
    ]);
}

/// SPEC §3.5 (seed 003 stateful sessions) for ping: an echo reply belongs to
/// the session of the echo request with the same identifier.
#[test]
fn s003_icmp_echo_reply_follows_its_request_identifier() {
    let h = host(&[
        "sg-ent type=enterprise",
        "sg-ent egress  ping-out  accept 1 icmp   -1/-1 0.0.0.0/0",
        "sg-ent egress  ping6-out accept 1 icmpv6 -1/-1 ::/0",
        "eth0: sg-ent",
    ]);
    h.sequence(&[
        "out ping 10.0.0.5 -> 198.51.100.10 id 0x1234 => accept sg-ent/ping-out",
        "in  pong 198.51.100.10 -> 10.0.0.5 id 0x1234 => accept session",
        "in  pong 198.51.100.10 -> 10.0.0.5 id 0x4321 => drop default",
        "in  pong 192.0.2.99 -> 10.0.0.5 id 0x1234 => drop default",
        "out ping 2001:db8::5 -> 2001:db8:ff::10 id 0x1234 => accept sg-ent/ping6-out",
        "in  pong 2001:db8:ff::10 -> 2001:db8::5 id 0x1234 => accept session",
        "in  pong 2001:db8:ff::10 -> 2001:db8::5 id 0x4321 => drop default",
        "in  pong 192.0.2.99 -> 2001:db8::5 id 0x1234 => drop default",
    ]);
}

/// SPEC §3.5: ICMP errors quoting a tracked session (destination
/// unreachable, time exceeded, packet too big, ...) are related traffic.
#[test]
fn spec_3_5_icmp_errors_about_a_tracked_session_are_related() {
    let h = host(&["sg-client", "eth0: sg-client"]);
    h.sequence(&[
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 => accept default",
        "out udp [2001:db8::5]:5353 -> [2001:db8:ff::10]:53 => accept default",
        "in icmp 203.0.113.1 -> 10.0.0.5 {3/3,3/13,11/0} quoting tcp 10.0.0.5:40000 -> 198.51.100.10:443 => accept related",
        "in icmp 198.51.100.10 -> 10.0.0.5 3/3 quoting tcp 10.0.0.5:40000 -> 198.51.100.10:443 => accept related",
        "in icmp 2001:db8:ff::1 -> 2001:db8::5 {1/4,3/0} quoting udp [2001:db8::5]:5353 -> [2001:db8:ff::10]:53 => accept related",
        // The same errors about a flow that is not tracked, or quoting nothing.
        "in icmp 203.0.113.1 -> 10.0.0.5 3/3 quoting tcp 10.0.0.5:40001 -> 198.51.100.10:443 => drop default",
        "in icmp 203.0.113.1 -> 10.0.0.5 11/0 => drop default",
        // Not an error: an echo request "quoting" a session is just a ping.
        "in ping 203.0.113.1 -> 10.0.0.5 id 1 quoting tcp 10.0.0.5:40000 -> 198.51.100.10:443 => drop default",
    ]);
}

/// seed 003 notes 「ルール動作が変更されない限り…確立されたセッションに影響
/// しません」 and SPEC §3.6: removing the rule keeps the established session
/// (new connections are dropped); a new explicit drop rule matching it ends
/// the session at its next packet, and it stays ended both ways.
#[test]
fn s003_rule_changes_keep_sessions_unless_a_drop_rule_matches() {
    let old = host(&[
        "sg-web ingress http accept 1 tcp 80/80 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    let removed = host(&["sg-web", "eth0: sg-web"]);
    let blocked = host(&[
        "sg-web ingress block-client-net drop 1 tcp 80/80 198.51.100.0/24",
        "eth0: sg-web",
    ]);
    let mut sessions = Sessions::on(&old);
    sessions.check(&[
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept sg-web/http",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 => accept session",
    ]);
    sessions.ruleset_changes_to(&removed);
    sessions.check(&[
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept session",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 => accept session",
        "in  tcp 198.51.100.10:50001 -> 10.0.0.5:80 => drop default",
    ]);
    sessions.ruleset_changes_to(&blocked);
    sessions.check(&[
        "in tcp 198.51.100.10:50000 -> 10.0.0.5:80 => drop session-ended-by sg-web/block-client-net",
        // The session stays ended, both ways: the server's replies (which
        // the basic egress default would accept) do not open it again.
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 ACK => drop session-ended-by sg-web/block-client-net",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 ACK => drop session-ended-by sg-web/block-client-net",
    ]);
}

/// SPEC §3.6 「no packet of it passes either way while that rule stays
/// (neither side can reopen it)」: a server pushing to a client whose
/// session a drop rule ended stays cut off however long it keeps pushing;
/// ICMP errors about the ended session are not related traffic. Once the
/// drop rule is gone, the flow is judged afresh like any new one.
#[test]
fn spec_3_6_an_ended_session_stays_ended_while_its_drop_rule_stays() {
    let open = host(&[
        "sg-web ingress http accept 2 tcp 80/80 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    let blocked = host(&[
        "sg-web ingress http   accept 2 tcp 80/80 0.0.0.0/0",
        "sg-web ingress client drop   1 all -1/-1 198.51.100.10",
        "eth0: sg-web",
    ]);
    let blocked_too = host(&[
        "sg-web ingress http   accept 2 tcp 80/80 0.0.0.0/0",
        "sg-web ingress client drop   1 all -1/-1 198.51.100.10",
        "sg-web ingress dns    accept 3 udp 53/53 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    let mut sessions = Sessions::on(&open);
    sessions.check(&[
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 SYN => accept sg-web/http",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 SYN+ACK => accept session",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 PSH+ACK => accept session",
    ]);
    sessions.ruleset_changes_to(&blocked);
    sessions.check(&[
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 PSH+ACK => drop session-ended-by sg-web/client",
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 PSH+ACK => drop session-ended-by sg-web/client",
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 ACK => drop session-ended-by sg-web/client",
        "in  icmp 198.51.100.10 -> 10.0.0.5 3/3 quoting tcp 10.0.0.5:80 -> 198.51.100.10:50000 => drop sg-web/client",
        "out icmp 10.0.0.5 -> 198.51.100.10 3/3 quoting tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept default",
    ]);
    // Ended sessions do not expire; another change that keeps the drop
    // rule keeps them ended.
    sessions.wait(100_000);
    sessions.ruleset_changes_to(&blocked_too);
    sessions.check(&[
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 PSH+ACK => drop session-ended-by sg-web/client",
    ]);
    // The drop rule goes: the flow is judged afresh (the basic egress
    // default opens a session, which the client's answer establishes).
    sessions.ruleset_changes_to(&open);
    sessions.check(&[
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 PSH+ACK => accept default",
        "in  tcp 198.51.100.10:50000 -> 10.0.0.5:80 ACK => accept session",
    ]);
}

/// SPEC §3.6 「TCP sessions follow the connection」: a half-open session
/// (no answer yet) lives `syn_timeout_secs`, an established one
/// `session_timeout_secs`, a closed one (RST, or FIN both ways)
/// `tcp_closed_timeout_secs`; a new SYN on a closed connection's ports is
/// judged by the rules.
#[test]
fn spec_3_6_tcp_sessions_follow_the_connection() {
    let h = host(&["sg-a", "eth0: sg-a"]);
    let d = &h.config.daemon;
    assert_eq!(
        (
            d.syn_timeout_secs,
            d.tcp_closed_timeout_secs,
            d.session_timeout_secs
        ),
        (60, 10, 910)
    );
    let out = |port: u16, flags: &str, verdict: &str| {
        format!("out tcp 10.0.0.5:{port} -> 198.51.100.10:443 {flags} => {verdict}")
    };
    let reply = |port: u16, flags: &str, verdict: &str| {
        format!("in tcp 198.51.100.10:443 -> 10.0.0.5:{port} {flags} => {verdict}")
    };
    let (new, session) = ("accept default", "accept session");
    let mut s = Sessions::on(&h);
    // Half-open: nobody answers for 61 s.
    s.check(&[out(40000, "SYN", new)]);
    s.wait(59);
    s.check(&[out(40001, "SYN", new)]);
    s.wait(2);
    s.check(&[
        reply(40000, "SYN+ACK", "drop default"),
        reply(40001, "SYN+ACK", session),
    ]);
    // Answered, not yet acknowledged: still the SYN timeout.
    s.wait(59);
    s.check(&[out(40001, "ACK", session)]);
    // Established once the opener acknowledges: lives 910 s idle.
    s.wait(909);
    s.check(&[reply(40001, "ACK", session)]);
    s.wait(911);
    s.check(&[reply(40001, "ACK", "drop default")]);
    // Answered but never acknowledged (what a server's answer to a spoofed
    // SYN leaves): gone after the SYN timeout.
    s.check(&[out(40002, "SYN", new), reply(40002, "SYN+ACK", session)]);
    s.wait(61);
    s.check(&[reply(40002, "ACK", "drop default")]);

    // Closed by a RST (either way), or by a FIN each way: 10 s more.
    for (port, closing) in [
        (40010, vec![out(40010, "RST", session)]),
        (40011, vec![reply(40011, "RST+ACK", session)]),
        (
            40012,
            vec![
                out(40012, "FIN+ACK", session),
                reply(40012, "FIN+ACK", session),
            ],
        ),
    ] {
        s.check(&[out(port, "SYN", new), reply(port, "SYN+ACK", session)]);
        s.check(&closing);
        s.check(&[reply(port, "ACK", session)]);
        s.wait(11);
        s.check(&[reply(port, "ACK", "drop default")]);
    }
    // A FIN one way only leaves it established.
    s.check(&[
        out(40020, "SYN", new),
        reply(40020, "SYN+ACK", session),
        out(40020, "FIN+ACK", session),
    ]);
    s.wait(11);
    s.check(&[reply(40020, "ACK", session)]);

    // A SYN on the ports of a closed connection is a new connection: the
    // rules judge it (inbound: dropped by default).
    s.check(&[
        out(40030, "SYN", new),
        reply(40030, "SYN+ACK", session),
        out(40030, "RST", session),
        reply(40030, "SYN", "drop default"),
        reply(40030, "ACK", session),
    ]);
}

/// How a TCP packet without a session is treated (README, "How a packet
/// is decided"): the rules judge it whatever its flags, and an accepted
/// one opens a half-open session (a connection picked up mid-stream, for
/// instance after its session expired, is established once the other
/// side answers); a RST opens nothing.
#[test]
fn spec_3_6_tcp_without_a_session_is_judged_by_the_rules() {
    let h = host(&["sg-a", "eth0: sg-a"]);
    let mut s = Sessions::on(&h);
    s.check(&[
        "in  tcp 198.51.100.10:443 -> 10.0.0.5:40000 ACK => drop default",
        "out tcp 10.0.0.5:40000 -> 198.51.100.10:443 ACK => accept default",
        "in  tcp 198.51.100.10:443 -> 10.0.0.5:40000 ACK => accept session",
        "out tcp 10.0.0.5:40001 -> 198.51.100.10:443 RST => accept default",
        "in  tcp 198.51.100.10:443 -> 10.0.0.5:40001 ACK => drop default",
    ]);
    // Picked up mid-stream and not answered: half-open, 60 s.
    s.check(&["out tcp 10.0.0.5:40002 -> 198.51.100.10:443 ACK => accept default"]);
    s.wait(61);
    s.check(&["in tcp 198.51.100.10:443 -> 10.0.0.5:40002 ACK => drop default"]);
}

/// seed 003 notes, same sentence: 「ルール動作が変更されない限り」 — when the
/// action of the rule that accepted the session changes to drop, the
/// session ends (at its next packet, in either direction).
#[test]
fn s003_changing_the_rule_action_to_drop_ends_the_session() {
    let old = host(&[
        "sg-web ingress http accept 1 tcp 80/80 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    let flipped = host(&[
        "sg-web ingress http drop 1 tcp 80/80 0.0.0.0/0",
        "eth0: sg-web",
    ]);
    let mut sessions = Sessions::on(&old);
    sessions.check(&["in tcp 198.51.100.10:50000 -> 10.0.0.5:80 => accept sg-web/http"]);
    // An unrelated change keeps it.
    sessions.ruleset_changes_to(&old);
    sessions.check(&["out tcp 10.0.0.5:80 -> 198.51.100.10:50000 => accept session"]);
    sessions.ruleset_changes_to(&flipped);
    sessions.check(&[
        "out tcp 10.0.0.5:80 -> 198.51.100.10:50000 => drop session-ended-by sg-web/http",
    ]);
}

/// seed 003 notes: changing the groups of a NIC does not affect established
/// sessions (even those that relied on the intra-group default); SPEC §3.6
/// 「Moving an interface from one group to another keeps its sessions」.
#[test]
fn s003_moving_an_interface_to_another_group_keeps_its_sessions() {
    let old = host(&["sg-a members=10.0.0.20", "sg-b", "eth0: sg-a"]);
    let new = host(&["sg-a members=10.0.0.20", "sg-b", "eth0: sg-b"]);
    let mut sessions = Sessions::on(&old);
    sessions.check(&["in tcp 10.0.0.20:40000 -> 10.0.0.5:22 => accept intra-group"]);
    sessions.ruleset_changes_to(&new);
    sessions.check(&[
        "in  tcp 10.0.0.20:40000 -> 10.0.0.5:22 => accept session",
        "out tcp 10.0.0.5:22 -> 10.0.0.20:40000 => accept session",
        "in  tcp 10.0.0.20:40001 -> 10.0.0.5:22 => drop default",
    ]);
}

/// seed 003 (port 25 restriction) with SPEC §3.6: a session to port 25
/// opened while the restriction is off, then an explicit drop rule for
/// TCP 25: the drop rule matches the session, so it ends.
#[test]
fn spec_3_6_explicit_drop_rule_ends_a_port_25_session() {
    let before = host(&["daemon block_smtp_egress=false", "sg-mail", "eth0: sg-mail"]);
    let after = host(&[
        "daemon block_smtp_egress=false",
        "sg-mail egress no-smtp drop 1 tcp 25/25 0.0.0.0/0",
        "eth0: sg-mail",
    ]);
    let mut sessions = Sessions::on(&before);
    sessions.check(&["out tcp 10.0.0.5:40000 -> 192.0.2.25:25 => accept default"]);
    sessions.ruleset_changes_to(&after);
    sessions.check(&[
        "in tcp 192.0.2.25:25 -> 10.0.0.5:40000 => drop session-ended-by sg-mail/no-smtp",
    ]);
}

/// SPEC §3.8 with §3.6: switching the port 25 restriction on (a reload)
/// ends the port-25 sessions opened while it was off, at their next packet
/// either way; other sessions go on.
#[test]
fn spec_3_8_switching_the_smtp_block_on_ends_port_25_sessions() {
    let off = host(&["daemon block_smtp_egress=false", "sg-mail", "eth0: sg-mail"]);
    let on = host(&["sg-mail", "eth0: sg-mail"]);
    let mut sessions = Sessions::on(&off);
    sessions.check(&[
        "out tcp 10.0.0.5:40000 -> 192.0.2.25:25 => accept default",
        "out tcp 10.0.0.5:40001 -> 192.0.2.25:25 => accept default",
        "out tcp 10.0.0.5:40002 -> 192.0.2.25:465 => accept default",
    ]);
    sessions.ruleset_changes_to(&on);
    sessions.check(&[
        "in  tcp 192.0.2.25:25 -> 10.0.0.5:40000 => drop built-in smtp-blocked",
        // It stays ended, both ways, while the block is on.
        "in  tcp 192.0.2.25:25 -> 10.0.0.5:40000 => drop built-in smtp-blocked",
        "out tcp 10.0.0.5:40001 -> 192.0.2.25:25 => drop built-in smtp-blocked",
        "out tcp 10.0.0.5:40001 -> 192.0.2.25:25 => drop built-in smtp-blocked",
        "in  tcp 192.0.2.25:465 -> 10.0.0.5:40002 => accept session",
    ]);
}

/// SPEC §3.7 with §3.6: the metadata service cannot be blocked by rules, so
/// a new drop rule for it does not end its session either.
#[test]
fn spec_3_6_a_drop_rule_does_not_end_a_metadata_session() {
    let old = host(&["sg-a", "eth0: sg-a"]);
    let new = host(&[
        "sg-a egress drop-metadata drop 1 all -1/-1 100.100.100.200",
        "eth0: sg-a",
    ]);
    let mut sessions = Sessions::on(&old);
    sessions.check(&["out tcp 10.0.0.5:40000 -> 100.100.100.200:80 => accept built-in metadata"]);
    sessions.ruleset_changes_to(&new);
    sessions.check(&["in tcp 100.100.100.200:80 -> 10.0.0.5:40000 => accept session"]);
}

/// SPEC §3.7: the metadata service's TCP, UDP and echo requests open
/// sessions for their replies; its other protocols (GRE, ICMP other than
/// echo) pass packet by packet and open nothing.
#[test]
fn spec_3_7_only_tcp_udp_and_echo_to_the_metadata_service_open_sessions() {
    let h = host(&["sg-ent type=enterprise", "eth0: sg-ent"]);
    h.sequence(&[
        "out udp 10.0.0.5:40000 -> 100.100.100.200:53 => accept built-in metadata",
        "in  udp 100.100.100.200:53 -> 10.0.0.5:40000 => accept session",
        "out ping 10.0.0.5 -> 100.100.100.200 id 7 => accept built-in metadata",
        "in  pong 100.100.100.200 -> 10.0.0.5 id 7 => accept session",
        "out proto 47 10.0.0.5 -> 100.100.100.200 => accept built-in metadata",
        "in  proto 47 100.100.100.200 -> 10.0.0.5 => drop default",
        // Timestamp request and reply.
        "out icmp 10.0.0.5 -> 100.100.100.200 13/0 => accept built-in metadata",
        "in  icmp 100.100.100.200 -> 10.0.0.5 14/0 => drop default",
    ]);
}

// ---------------------------------------------------------------------
// Fragments (SPEC §3.9)
// ---------------------------------------------------------------------

/// SPEC §3.9: a non-first fragment follows the verdict of its first
/// fragment; an unknown later fragment is dropped inbound and, outbound,
/// judged without ports.
#[test]
fn spec_3_9_later_fragments_follow_their_first_fragment() {
    let h = host(&[
        "sg-dns ingress dns accept 1 udp 53/53 0.0.0.0/0",
        "eth0: sg-dns",
    ]);
    h.sequence(&[
        "in udp 198.51.100.10:5000 -> 10.0.0.5:53 first-fragment 7 => accept sg-dns/dns",
        "in udp 198.51.100.10 -> 10.0.0.5 later-fragment 7 => accept fragment-of accept sg-dns/dns",
        "in udp 198.51.100.10:5000 -> 10.0.0.5:54 first-fragment 8 => drop default",
        "in udp 198.51.100.10 -> 10.0.0.5 later-fragment 8 => drop fragment-of drop default",
        // Same id from another source, or of another protocol, is another
        // datagram: unknown.
        "in udp 198.51.100.11 -> 10.0.0.5 later-fragment 7 => drop fragment-unknown",
        "in proto 6 198.51.100.10 -> 10.0.0.5 later-fragment 7 => drop fragment-unknown",
        "in udp 2001:db8:ff::10 -> 2001:db8::5 later-fragment 9 => drop fragment-unknown",
        // Outbound unknown later fragment: judged without ports (basic: accept).
        "out udp 10.0.0.5 -> 198.51.100.10 later-fragment 10 => accept default",
        // A fragmented reply of a session follows the session's verdict.
        "out udp 10.0.0.5:6000 -> 192.0.2.53:53 => accept default",
        "in  udp 192.0.2.53:53 -> 10.0.0.5:6000 first-fragment 11 => accept session",
        "in  udp 192.0.2.53 -> 10.0.0.5 later-fragment 11 => accept fragment-of accept session",
    ]);
}

/// SPEC §3.9 (IPv6, RFC 8200 §4.5): a datagram's IPv6 fragments are known
/// by addresses and identification only. The first fragment may carry
/// extension headers after its Fragment header (here destination options,
/// 60), so the later ones name those as the next header, not UDP: they
/// still follow the first fragment.
#[test]
fn spec_3_9_ipv6_later_fragments_follow_whatever_their_next_header() {
    let h = host(&["sg-dns ingress dns accept 1 udp 53/53 ::/0", "eth0: sg-dns"]);
    h.sequence(&[
        "in udp [2001:db8:ff::10]:5000 -> [2001:db8::5]:53 first-fragment 7 => accept sg-dns/dns",
        "in proto 60 2001:db8:ff::10 -> 2001:db8::5 later-fragment 7 => accept fragment-of accept sg-dns/dns",
        "in udp 2001:db8:ff::10 -> 2001:db8::5 later-fragment 7 => accept fragment-of accept sg-dns/dns",
        "in udp [2001:db8:ff::10]:5000 -> [2001:db8::5]:54 first-fragment 8 => drop default",
        "in proto 60 2001:db8:ff::10 -> 2001:db8::5 later-fragment 8 => drop fragment-of drop default",
        "in proto 60 2001:db8:ff::11 -> 2001:db8::5 later-fragment 7 => drop fragment-unknown",
    ]);
}

// ---------------------------------------------------------------------
// Hypervisor mode (SPEC §2, interface binding)
// ---------------------------------------------------------------------

/// Three instances on one host: vm1 and vm2 in `sg-app`, vm3 in `sg-other`.
fn hypervisor() -> Host {
    host(&[
        "sg-app",
        "sg-other",
        "tap-vm1: sg-app   mode=hypervisor addresses=10.0.0.11,2001:db8::11",
        "tap-vm2: sg-app   mode=hypervisor addresses=10.0.0.12",
        "tap-vm3: sg-other mode=hypervisor addresses=10.0.0.13",
    ])
}

/// SPEC §2 (hypervisor mode) with seed 002 / 004 intra-group communication:
/// two instances on one host in one basic group reach each other by the
/// intra-group default; an instance of another group does not.
#[test]
fn spec_2_hypervisor_instances_in_one_basic_group_reach_each_other() {
    hypervisor().sequence(&[
        "tap-vm1: out tcp 10.0.0.11:40000 -> 10.0.0.12:22 => accept default",
        "tap-vm2: in  tcp 10.0.0.11:40000 -> 10.0.0.12:22 => accept intra-group",
        "tap-vm2: out tcp 10.0.0.12:22 -> 10.0.0.11:40000 => accept session",
        "tap-vm1: in  tcp 10.0.0.12:22 -> 10.0.0.11:40000 => accept session",
        "tap-vm3: out tcp 10.0.0.13:40000 -> 10.0.0.12:22 => accept default",
        "tap-vm2: in  tcp 10.0.0.13:40000 -> 10.0.0.12:22 => drop default",
    ]);
}

/// SPEC §2 (hypervisor mode, `addresses`): a packet an instance sends from
/// any address not its own is dropped, so it cannot pose as a member of a
/// group it is not in.
#[test]
fn spec_2_hypervisor_instance_sending_from_another_address_is_spoofed() {
    hypervisor().check(&[
        // vm3 (sg-other) poses as vm1 (sg-app).
        "tap-vm3: out tcp 10.0.0.11:40000 -> 10.0.0.12:22 => drop spoofed",
        "tap-vm3: out tcp 10.0.0.99:40000 -> 198.51.100.10:443 => drop spoofed",
        "tap-vm1: out tcp [2001:db8::11]:40000 -> [2001:db8:ff::10]:443 => accept default",
        "tap-vm1: out tcp [2001:db8::99]:40000 -> [2001:db8:ff::10]:443 => drop spoofed",
        "tap-vm1: out ping 10.0.0.12 -> 198.51.100.10 id 1 => drop spoofed",
        // The instance's own addresses are fine; DHCP before it has one, too.
        "tap-vm3: out tcp 10.0.0.13:40000 -> 198.51.100.10:443 => accept default",
        "tap-vm3: out udp 0.0.0.0:68 -> 255.255.255.255:67 => accept built-in dhcp-client",
    ]);
}

/// SPEC §2 (hypervisor mode): 「a packet the instance sends with any other
/// source address is dropped (anti-spoofing), so no instance can pose as a
/// member of a group it is not in」. The built-ins of SPEC §3.7 need only the
/// unspecified address (DHCP DISCOVER, DAD) and link-local sources, which
/// stay allowed; posing as another instance must not be.
#[test]
fn spec_2_hypervisor_built_ins_do_not_bypass_anti_spoofing() {
    hypervisor().check(&[
        // Still fine: DHCP before an address, ND from link-local or ::.
        "tap-vm3: out udp 0.0.0.0:68 -> 255.255.255.255:67 => accept built-in dhcp-client",
        "tap-vm1: out icmp fe80::11 -> ff02::2 133/0 => accept built-in neighbor-discovery",
        "tap-vm1: out icmp :: -> ff02::1:ff00:11 135/0 => accept built-in neighbor-discovery",
        // vm3 (sg-other) poses as vm1 (sg-app) with a DHCP-client-shaped packet.
        "tap-vm3: out udp 10.0.0.11:68 -> 10.0.0.12:67 => drop spoofed",
        // vm1 advertises an address that is not its own (NDP spoofing).
        "tap-vm1: out icmp 2001:db8::12 -> ff02::1 136/0 => drop spoofed",
    ]);
}

/// SPEC §2 (anti-spoofing) for neighbour discovery: from its own address, an
/// instance may advertise only its own addresses (or a link-local one,
/// which is not configured) and may not act as a router (RA guard): a
/// neighbour advertisement for another instance's address, a router
/// advertisement or a redirect would attract the other instances' traffic.
/// Inbound, and in instance mode, neighbour discovery stays a built-in.
#[test]
fn spec_2_hypervisor_instances_cannot_claim_addresses_or_act_as_routers() {
    let na = |src: &str, target: &str| format!("icmp {src} -> ff02::1 136/0 target {target}");
    let rows = [
        format!("tap-vm1: out {} => accept built-in neighbor-discovery", na("2001:db8::11", "2001:db8::11")),
        format!("tap-vm1: out {} => accept built-in neighbor-discovery", na("fe80::11", "fe80::11")),
        format!("tap-vm1: out {} => drop spoofed", na("2001:db8::11", "2001:db8::12")),
        format!("tap-vm1: out {} => drop spoofed", na("fe80::11", "2001:db8::12")),
        // An advertisement that claims nothing claims nothing of its own.
        "tap-vm1: out icmp 2001:db8::11 -> ff02::1 136/0 => drop spoofed".to_owned(),
        "tap-vm1: out icmp fe80::11 -> ff02::1 134/0 => drop spoofed".to_owned(),
        "tap-vm1: out icmp fe80::11 -> 2001:db8::12 137/0 => drop spoofed".to_owned(),
        // Solicitations ask; they claim nothing.
        "tap-vm1: out icmp 2001:db8::11 -> ff02::1:ff00:12 135/0 target 2001:db8::12 => accept built-in neighbor-discovery".to_owned(),
        "tap-vm1: out icmp fe80::11 -> ff02::2 133/0 => accept built-in neighbor-discovery".to_owned(),
        // The router's advertisements reach the instance; its redirects
        // only with `builtin_nd_redirects`.
        "tap-vm1: in  icmp fe80::1 -> ff02::1 134/0 => accept built-in neighbor-discovery".to_owned(),
        "tap-vm1: in  icmp fe80::1 -> 2001:db8::11 137/0 => drop default".to_owned(),
    ];
    hypervisor().check(&rows);
    // An instance-mode host may be a router.
    host(&["sg-web", "eth0: sg-web"]).check(&[
        "out icmp fe80::1 -> ff02::1 134/0 => accept built-in neighbor-discovery",
        "out icmp 2001:db8::1 -> ff02::1 136/0 target 2001:db8::99 => accept built-in neighbor-discovery",
    ]);
}
