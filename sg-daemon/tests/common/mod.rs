//! Tables for the reference decision (`sg_daemon::reference`): rulesets
//! and packets written like rows of the seeds' tables. `reference_seeds.rs`
//! is written in these terms.
//!
//! # Rulesets
//!
//! A ruleset is a list of lines, rendered to SPEC §7 TOML and parsed by
//! `config::parse` (so it is validated as a file would be). A rule is a
//! line in the columns of the seeds' rule tables, after its group and
//! direction:
//!
//! ```text
//! group   direction  id    policy  priority  protocol  port range  authorization object
//! sg-web  ingress    http  accept  1         tcp       80/80       0.0.0.0/0
//! ```
//!
//! * priority `-` leaves it out (the default, 1);
//! * protocol: a name, or a number (written as a TOML integer);
//! * a port range `prl-…` is a port list (`port_range_list_id`);
//! * the object is the remote side (`source_…` for ingress, `dest_…` for
//!   egress): `sg-…` a group, `pl-…` a prefix list, else an address or CIDR;
//! * `key=value` words after it are further fields (5-tuple rules:
//!   `source_port_range=22/22`).
//!
//! Other lines, with SPEC §7 fields as `key=value` (a list comma-separated):
//!
//! * `sg-a type=enterprise members=10.0.1.10,10.0.1.11`, or `sg-a` alone: a
//!   group (groups come in the order they are first named);
//! * `eth0: sg-a sg-b`: an interface and its groups, in binding order, with
//!   optional fields such as `mode=hypervisor addresses=10.0.0.11`;
//! * `prefix_list pl-office 10 203.0.113.0/24 192.0.2.7` (id, max_entries,
//!   entries), the same for `port_list`;
//! * `daemon block_smtp_egress=false`: `[daemon]` settings.
//!
//! # Rows
//!
//! A row is one packet on one interface and the decision it must get:
//!
//! ```text
//! [iface:] in|out PACKET => accept|drop WHAT-DECIDES
//! eth1: in tcp 198.51.100.10:50000 -> 10.0.0.6:22 => accept sg-b/b-ssh
//! ```
//!
//! The interface is `eth0` unless named. Packets:
//!
//! * `tcp A:P -> B:P`, `udp A:P -> B:P` (IPv6 as `[2001:db8::5]:22`);
//! * `proto N A -> B`: a protocol without ports (47 is GRE);
//! * `icmp A -> B TYPE/CODE`: ICMP, or ICMPv6 when the source is IPv6;
//! * `ping A -> B id N` and `pong A -> B id N`: echo request and reply,
//!   both "ports" carry the identifier;
//! * after a packet: `first-fragment ID`, `later-fragment ID` (a later
//!   fragment has no transport header: write its addresses without ports),
//!   `quoting PACKET` (an ICMP error quoting that packet), `target ADDR`
//!   (the target address of a neighbour solicitation or advertisement);
//! * after a TCP packet, its flags: `SYN`, `SYN+ACK`, `ACK`, `FIN+ACK`,
//!   `RST`, … (`+`-joined, any of SYN, ACK, FIN, RST, PSH); without them a
//!   TCP packet is a SYN.
//!
//! What decides: `group/rule-id`, `default`, `intra-group`, `session`,
//! `related`, `spoofed`, `built-in metadata|pmtud|neighbor-discovery|
//! dhcp-client|smtp-blocked|not-ip`, `session-ended-by group/rule-id`,
//! `fragment-of VERDICT` (a later fragment judged like its first one) and
//! `fragment-unknown` (its first fragment was not seen).
//!
//! A `{a,b,c}` in a row stands for one row per alternative, as in a shell.
//! [`Host::check`] runs each row alone, with fresh session state;
//! [`Host::sequence`] and [`Sessions`] run rows in order and keep the
//! sessions (one state per interface) from row to row; [`Sessions::wait`]
//! lets time pass between rows (sessions expire). A failing table
//! reports every row that failed, with what it got.

use std::{
    collections::HashMap,
    iter::Peekable,
    net::{IpAddr, SocketAddr},
    path::Path,
    str::SplitWhitespace,
};

use sg_daemon::{
    config,
    model::{Addresses, Config, Direction, InterfaceBinding},
    reference::{self, BuiltIn, DecidedBy, Decision, Fragment, Interface, Packet, State},
};

pub const IN: Direction = Direction::Ingress;
pub const OUT: Direction = Direction::Egress;

/// The addresses the host reports for its instance-mode interfaces: `eth0`
/// is 10.0.0.5 and 2001:db8::5, `eth1` is 10.0.0.6 and 2001:db8::6.
fn own_addresses(binding: &InterfaceBinding) -> Vec<IpAddr> {
    let own: &[&str] = match binding.name.as_str() {
        "eth0" => &["10.0.0.5", "2001:db8::5"],
        "eth1" => &["10.0.0.6", "2001:db8::6"],
        _ => &[],
    };
    own.iter().map(|a| a.parse().unwrap()).collect()
}

// ---------------------------------------------------------------------
// Rulesets
// ---------------------------------------------------------------------

/// `true`, `false` and integers as they are, anything else a string.
fn toml_value(value: &str) -> String {
    if value == "true" || value == "false" || value.parse::<i64>().is_ok() {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

fn toml_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// `key=value` as a TOML line (`addresses` and `members` are lists).
fn toml_field(line: &str, word: &str) -> String {
    let (key, value) = word
        .split_once('=')
        .unwrap_or_else(|| panic!("ruleset line `{line}`: `{word}` is not key=value"));
    match key {
        "addresses" | "members" => format!("{key} = {}", toml_list(value.split(','))),
        _ => format!("{key} = {}", toml_value(value)),
    }
}

/// A rule (`id policy priority protocol ports object [key=value...]`) as a
/// TOML inline table; `side` is `source` for ingress, `dest` for egress.
fn rule_toml(line: &str, side: &str, words: &[&str]) -> String {
    let [id, policy, priority, protocol, ports, object, extras @ ..] = words else {
        panic!("rule `{line}`: want id, policy, priority, protocol, port range, object");
    };
    let mut fields = vec![format!("id = {id:?}"), format!("policy = {policy:?}")];
    if *priority != "-" {
        fields.push(format!("priority = {priority}"));
    }
    fields.push(format!("ip_protocol = {}", toml_value(protocol)));
    let ports_key = match ports.starts_with("prl-") {
        true => "port_range_list_id",
        false => "port_range",
    };
    fields.push(format!("{ports_key} = {ports:?}"));
    let object_key = match object {
        o if o.starts_with("sg-") => "group_id",
        o if o.starts_with("pl-") => "prefix_list_id",
        _ => "cidr_ip",
    };
    fields.push(format!("{side}_{object_key} = {object:?}"));
    fields.extend(extras.iter().map(|word| toml_field(line, word)));
    format!("{{ {} }}", fields.join(", "))
}

#[derive(Default)]
struct Group<'a> {
    id: &'a str,
    fields: Vec<String>,
    ingress: Vec<String>,
    egress: Vec<String>,
}

/// A ruleset's lines (see the module comment) as a SPEC §7 config file.
pub fn to_toml(lines: &[impl AsRef<str>]) -> String {
    let (mut daemon, mut lists, mut interfaces) = (String::new(), String::new(), String::new());
    let mut groups: Vec<Group> = Vec::new();
    for line in lines {
        let line = line.as_ref();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["daemon", fields @ ..] => {
                for word in fields {
                    daemon += &format!("{}\n", toml_field(line, word));
                }
            }
            [
                table @ ("prefix_list" | "port_list"),
                id,
                max_entries,
                entries @ ..,
            ] => {
                let entries = toml_list(entries.iter().copied());
                lists += &format!("[[{table}]]\nid = {id:?}\nmax_entries = {max_entries}\n");
                lists += &format!("entries = {entries}\n\n");
            }
            [iface, rest @ ..] if iface.ends_with(':') => {
                let name = iface.trim_end_matches(':');
                interfaces += &format!("[[interface]]\nname = {name:?}\n");
                let (fields, bound): (Vec<&str>, Vec<&str>) =
                    rest.iter().partition(|w| w.contains('='));
                for word in fields {
                    interfaces += &format!("{}\n", toml_field(line, word));
                }
                interfaces += &format!("security_groups = {}\n\n", toml_list(bound));
            }
            [id, rest @ ..] => {
                if !groups.iter().any(|g| g.id == *id) {
                    groups.push(Group {
                        id,
                        ..Group::default()
                    });
                }
                let group = groups.iter_mut().find(|g| g.id == *id).unwrap();
                match rest {
                    ["ingress", rule @ ..] => group.ingress.push(rule_toml(line, "source", rule)),
                    ["egress", rule @ ..] => group.egress.push(rule_toml(line, "dest", rule)),
                    fields => {
                        let fields = fields.iter().map(|word| toml_field(line, word));
                        group.fields.extend(fields);
                    }
                }
            }
            [] => {}
        }
    }
    let mut out = String::new();
    if !daemon.is_empty() {
        out += &format!("[daemon]\n{daemon}\n");
    }
    out += &lists;
    for group in &groups {
        out += &format!("[[security_group]]\nid = {:?}\n", group.id);
        for field in &group.fields {
            out += &format!("{field}\n");
        }
        for (key, rules) in [("ingress", &group.ingress), ("egress", &group.egress)] {
            if !rules.is_empty() {
                out += &format!("{key} = [\n  {},\n]\n", rules.join(",\n  "));
            }
        }
        out += "\n";
    }
    out + &interfaces
}

/// The config of a ruleset, parsed and validated.
pub fn host(lines: &[impl AsRef<str>]) -> Host {
    let toml = to_toml(lines);
    let config = config::parse(Path::new("seeds.toml"), &toml)
        .unwrap_or_else(|e| panic!("{e}\nin:\n{toml}"));
    let addresses = Addresses::resolve(&config, own_addresses);
    Host { config, addresses }
}

/// The errors of a ruleset that must be rejected.
pub fn rejected(lines: &[&str]) -> String {
    let toml = to_toml(lines);
    match config::parse(Path::new("seeds.toml"), &toml) {
        Ok(_) => panic!("accepted, must be rejected:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

/// A parsed, validated config and the addresses resolved from it.
pub struct Host {
    pub config: Config,
    addresses: Addresses,
}

impl Host {
    fn iface(&self, name: &str) -> Interface<'_> {
        let binding = self
            .config
            .interfaces
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no interface {name}"));
        Interface {
            config: &self.config,
            binding,
            addresses: &self.addresses,
        }
    }

    /// The merged, ordered rules of an interface as `group/rule-id`.
    pub fn order(&self, ifname: &str, dir: Direction) -> Vec<String> {
        reference::ordered_rules(&self.iface(ifname), dir)
            .into_iter()
            .map(|(group, rule)| format!("{group}/{}", rule.id))
            .collect()
    }

    /// Each row alone, with fresh session state.
    #[track_caller]
    pub fn check(&self, rows: &[impl AsRef<str>]) {
        judge(self, None, rows);
    }

    /// The rows in order, keeping the sessions from row to row.
    #[track_caller]
    pub fn sequence(&self, rows: &[impl AsRef<str>]) {
        Sessions::on(self).check(rows);
    }
}

/// Sessions (one state per interface) kept from row to row, and across a
/// change of ruleset.
pub struct Sessions<'h> {
    host: &'h Host,
    states: HashMap<String, State>,
}

impl<'h> Sessions<'h> {
    pub fn on(host: &'h Host) -> Sessions<'h> {
        Sessions {
            host,
            states: HashMap::new(),
        }
    }

    /// The rows in order.
    #[track_caller]
    pub fn check(&mut self, rows: &[impl AsRef<str>]) {
        judge(self.host, Some(&mut self.states), rows);
    }

    /// The rules or bindings change to those of `host` (SPEC §3.6).
    pub fn ruleset_changes_to(&mut self, host: &'h Host) {
        self.host = host;
        self.states.values_mut().for_each(State::ruleset_changed);
    }

    /// `secs` seconds pass without a packet, on every interface.
    #[allow(dead_code)] // not every table test waits
    pub fn wait(&mut self, secs: u64) {
        for ifname in self.host.config.interfaces.iter().map(|b| &b.name) {
            self.states.entry(ifname.clone()).or_default().wait(secs);
        }
    }
}

#[track_caller]
fn judge(host: &Host, mut states: Option<&mut HashMap<String, State>>, rows: &[impl AsRef<str>]) {
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, written) in rows.iter().enumerate() {
        let written = written.as_ref();
        for text in expand(written) {
            count += 1;
            let row = Row::parse(&text);
            let mut fresh = State::default();
            let state = match states.as_deref_mut() {
                Some(states) => states.entry(row.iface.clone()).or_default(),
                None => &mut fresh,
            };
            let got = reference::decide(&host.iface(&row.iface), state, row.dir, &row.packet);
            if got != row.expect {
                let mut failure = format!("row {}: `{text}`\n    got: {}", n + 1, show(&got));
                if text != written {
                    failure += &format!("\n    (one of `{written}`)");
                }
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same rows (packets) expecting `verdict` instead.
pub fn with_verdict(rows: &[&str], verdict: &str) -> Vec<String> {
    rows.iter()
        .map(|row| {
            format!(
                "{} => {verdict}",
                row.split_once("=>").expect("a row").0.trim()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------

/// `{a,b}` alternatives, one row each (the first group varies slowest).
fn expand(row: &str) -> Vec<String> {
    let Some(open) = row.find('{') else {
        return vec![row.to_owned()];
    };
    let close = open
        + row[open..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed {{ in `{row}`"));
    row[open + 1..close]
        .split(',')
        .flat_map(|alt| {
            expand(&format!(
                "{}{}{}",
                &row[..open],
                alt.trim(),
                &row[close + 1..]
            ))
        })
        .collect()
}

struct Row {
    iface: String,
    dir: Direction,
    packet: Packet,
    expect: Decision,
}

/// The words of a row, with errors that name it.
struct Words<'a> {
    row: &'a str,
    words: Peekable<SplitWhitespace<'a>>,
}

impl<'a> Words<'a> {
    fn next(&mut self, what: &str) -> &'a str {
        let row = self.row;
        self.words
            .next()
            .unwrap_or_else(|| panic!("row `{row}`: {what} missing"))
    }

    fn bad(&self, what: &str, word: &str) -> ! {
        panic!("row `{}`: `{word}` is not {what}", self.row)
    }

    fn number<T: TryFrom<u32>>(&mut self, what: &str) -> T {
        let word = self.next(what);
        let n = match word.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => word.parse(),
        };
        n.ok()
            .and_then(|n| T::try_from(n).ok())
            .unwrap_or_else(|| self.bad(what, word))
    }

    fn end(&mut self) {
        if let Some(word) = self.words.next() {
            self.bad("expected here", word);
        }
    }
}

impl Row {
    fn parse(text: &str) -> Row {
        let (left, right) = text
            .split_once("=>")
            .unwrap_or_else(|| panic!("row `{text}`: no =>"));
        let mut w = Words {
            row: text,
            words: left.split_whitespace().peekable(),
        };
        let mut iface = "eth0".to_owned();
        if let Some(name) = w.words.peek().and_then(|word| word.strip_suffix(':')) {
            iface = name.to_owned();
            w.next("interface");
        }
        let dir = match w.next("in or out") {
            "in" => IN,
            "out" => OUT,
            word => w.bad("in or out", word),
        };
        let packet = packet(&mut w);
        w.end();
        let mut w = Words {
            row: text,
            words: right.split_whitespace().peekable(),
        };
        let expect = verdict(&mut w);
        w.end();
        Row {
            iface,
            dir,
            packet,
            expect,
        }
    }
}

/// `A:P`, `[A6]:P`, or an address alone (port 0).
fn endpoint(w: &mut Words) -> (IpAddr, u16) {
    let word = w.next("an address");
    if let Ok(ip) = word.parse::<IpAddr>() {
        return (ip, 0);
    }
    let addr: SocketAddr = word.parse().unwrap_or_else(|_| w.bad("an address", word));
    (addr.ip(), addr.port())
}

fn packet(w: &mut Words) -> Packet {
    let kind = w.next("a protocol");
    let proto = match kind {
        "tcp" => reference::TCP,
        "udp" => reference::UDP,
        "proto" => w.number("a protocol number"),
        "icmp" | "ping" | "pong" => 0,
        word => w.bad("tcp, udp, proto, icmp, ping or pong", word),
    };
    let (src, src_port) = endpoint(w);
    match w.next("->") {
        "->" => {}
        word => w.bad("->", word),
    }
    let (dst, dst_port) = endpoint(w);
    let mut pkt = Packet::probe(src, dst, proto, src_port, dst_port);
    let v4 = src.is_ipv4();
    pkt.icmp = match kind {
        "icmp" => {
            let word = w.next("TYPE/CODE");
            let parsed = word
                .split_once('/')
                .and_then(|(t, c)| Some((t.parse().ok()?, c.parse().ok()?)));
            Some(parsed.unwrap_or_else(|| w.bad("TYPE/CODE", word)))
        }
        "ping" | "pong" => {
            match w.next("id") {
                "id" => {}
                word => w.bad("id", word),
            }
            let id = w.number("an identifier");
            (pkt.src_port, pkt.dst_port) = (id, id);
            Some(match (kind, v4) {
                ("ping", true) => (8, 0),
                ("ping", false) => (128, 0),
                (_, true) => (0, 0),
                (_, false) => (129, 0),
            })
        }
        _ => None,
    };
    if pkt.icmp.is_some() {
        pkt.proto = if v4 {
            reference::ICMP
        } else {
            reference::ICMPV6
        };
    }
    while let Some(&word) = w.words.peek() {
        match word {
            "first-fragment" | "later-fragment" => {
                w.next(word);
                let id = w.number("a fragment id");
                pkt.fragment = if word == "first-fragment" {
                    Fragment::First { id }
                } else {
                    Fragment::Later { id }
                };
            }
            "quoting" => {
                w.next(word);
                pkt.quoted = Some(Box::new(packet(w)));
            }
            "target" => {
                w.next(word);
                let word = w.next("a target address");
                pkt.nd_target = Some(word.parse().unwrap_or_else(|_| w.bad("an address", word)));
            }
            flags if pkt.proto == reference::TCP && tcp_flags(flags).is_some() => {
                w.next(word);
                pkt.tcp_flags = tcp_flags(flags).unwrap_or_default();
            }
            _ => break,
        }
    }
    pkt
}

/// `SYN+ACK` and the like as TCP flags.
fn tcp_flags(word: &str) -> Option<u8> {
    word.split('+').try_fold(0, |flags, name| {
        let flag = match name {
            "SYN" => reference::TCP_SYN,
            "ACK" => reference::TCP_ACK,
            "FIN" => reference::TCP_FIN,
            "RST" => reference::TCP_RST,
            "PSH" => 0x08,
            _ => return None,
        };
        Some(flags | flag)
    })
}

static BUILT_INS: [(&str, BuiltIn); 6] = [
    ("not-ip", BuiltIn::NotIp),
    ("metadata", BuiltIn::Metadata),
    ("pmtud", BuiltIn::Pmtud),
    ("neighbor-discovery", BuiltIn::NeighborDiscovery),
    ("dhcp-client", BuiltIn::DhcpClient),
    ("smtp-blocked", BuiltIn::SmtpBlocked),
];

static PLAIN: [(&str, DecidedBy); 5] = [
    ("default", DecidedBy::Default),
    ("intra-group", DecidedBy::IntraGroup),
    ("session", DecidedBy::Session),
    ("related", DecidedBy::Related),
    ("spoofed", DecidedBy::Spoofed),
];

fn verdict(w: &mut Words) -> Decision {
    let accept = match w.next("accept or drop") {
        "accept" => true,
        "drop" => false,
        word => w.bad("accept or drop", word),
    };
    let word = w.next("what decides");
    let rule = |w: &mut Words, word: &str| match word.split_once('/') {
        Some((group, id)) => (group.to_owned(), id.to_owned()),
        None => w.bad("group/rule-id", word),
    };
    let by = if let Some((_, by)) = PLAIN.iter().find(|(name, _)| *name == word) {
        by.clone()
    } else {
        match word {
            "built-in" => {
                let name = w.next("a built-in");
                let found = BUILT_INS.iter().find(|(n, _)| *n == name);
                DecidedBy::BuiltIn(found.unwrap_or_else(|| w.bad("a built-in", name)).1)
            }
            "session-ended-by" => {
                let word = w.next("group/rule-id");
                let (group, id) = rule(w, word);
                DecidedBy::SessionEnded { group, id }
            }
            "fragment-of" => DecidedBy::Fragment(Some(Box::new(verdict(w)))),
            "fragment-unknown" => DecidedBy::Fragment(None),
            _ => {
                let (group, id) = rule(w, word);
                DecidedBy::Rule { group, id }
            }
        }
    };
    Decision { accept, by }
}

/// A decision in the words of a row.
fn show(decision: &Decision) -> String {
    let by = match &decision.by {
        DecidedBy::Rule { group, id } => format!("{group}/{id}"),
        DecidedBy::SessionEnded { group, id } => format!("session-ended-by {group}/{id}"),
        DecidedBy::BuiltIn(b) => {
            format!(
                "built-in {}",
                BUILT_INS.iter().find(|(_, x)| x == b).unwrap().0
            )
        }
        DecidedBy::Fragment(Some(first)) => format!("fragment-of {}", show(first)),
        DecidedBy::Fragment(None) => "fragment-unknown".to_owned(),
        by => PLAIN.iter().find(|(_, x)| x == by).unwrap().0.to_owned(),
    };
    format!("{} {by}", if decision.accept { "accept" } else { "drop" })
}
